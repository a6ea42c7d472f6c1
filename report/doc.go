// Package report renders wfsched's results for people: text tables (the only
// place tablewriter is used) and the views of each command. It is the last
// stage of the flow and imports the packages whose results it renders.
package report
