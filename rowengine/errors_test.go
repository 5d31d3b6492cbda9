package rowengine

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strings"
	"testing"
)

// TestSentinelsListsEveryDeclaration: Sentinels, which the errno, HTTP
// status and exit code tests walk, names every Err* variable of
// errors.go, so a new sentinel cannot slip past them unmapped.
func TestSentinelsListsEveryDeclaration(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	for _, d := range f.Decls {
		gen, ok := d.(*ast.GenDecl)
		if !ok || gen.Tok != token.VAR {
			continue
		}
		for _, spec := range gen.Specs {
			for _, name := range spec.(*ast.ValueSpec).Names {
				if strings.HasPrefix(name.Name, "Err") {
					declared = append(declared, name.Name)
				}
			}
		}
	}
	if len(declared) == 0 {
		t.Fatal("no Err* variables found in errors.go")
	}
	for _, name := range declared {
		if _, ok := Sentinels[name]; !ok {
			t.Errorf("%s is declared in errors.go but missing from Sentinels", name)
		}
	}
	for name := range Sentinels {
		if !slices.Contains(declared, name) {
			t.Errorf("Sentinels names %s, which errors.go does not declare", name)
		}
	}
}
