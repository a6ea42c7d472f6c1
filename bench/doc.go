// Package bench defines benchmark suites (YAML files naming traces,
// policies, routing logics, instances, iterations and the figures to
// track), their results (bench.json), and the regression gate that compares
// results with a baseline: a figure regresses when it is worse by more than
// a threshold and the difference is significant (Welch's t-test at 5%).
// The command line runs suites with `wfsched bench`.
package bench
