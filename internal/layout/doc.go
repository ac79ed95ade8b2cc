// Package layout holds the import-rule test of the repository. The rules
// are the "Repository layout" tables of CONTRIBUTING.md (what each package
// may import, and which packages are test support); the test reads them
// and checks every package's imports, as `go list` reports them, against
// them. It sits outside the data flow and is imported by nothing.
package layout
