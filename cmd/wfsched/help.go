package main

import "github.com/spf13/pflag"

// detailKey annotates a flag with the longer explanation that the
// command-line reference (docs/cli.md) gives in place of its one-line help.
const detailKey = "wfsched_detail"

// brief gives flags of fs a short help line each (name to text), keeping
// the text they were registered with as their reference detail: --help
// stays within a terminal's width, and docs/cli.md keeps the whole
// explanation. A name fs lacks is a programming error.
func brief(fs *pflag.FlagSet, short map[string]string) {
	for name, text := range short {
		f := fs.Lookup(name)
		if f == nil {
			panic("brief: no flag --" + name)
		}
		if f.Annotations == nil {
			f.Annotations = map[string][]string{}
		}
		f.Annotations[detailKey] = []string{f.Usage}
		f.Usage = text
	}
}

// detail is a flag's reference text: its detail, else its help.
func detail(f *pflag.Flag) string {
	if d := f.Annotations[detailKey]; len(d) > 0 {
		return d[0]
	}
	return f.Usage
}
