package api

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strings"
	"testing"
)

// TestCodesListsEveryCode: Codes, which the exit-code test walks, names
// every Code* constant of api.go.
func TestCodesListsEveryCode(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "api.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range f.Decls {
		gen, ok := d.(*ast.GenDecl)
		if !ok || gen.Tok != token.CONST {
			continue
		}
		for _, spec := range gen.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "Code") {
					continue
				}
				n++
				value := strings.Trim(vs.Values[i].(*ast.BasicLit).Value, `"`)
				if !slices.Contains(Codes, value) {
					t.Errorf("%s (%q) is missing from Codes", name.Name, value)
				}
			}
		}
	}
	if n != len(Codes) {
		t.Errorf("api.go declares %d codes, Codes lists %d", n, len(Codes))
	}
}
