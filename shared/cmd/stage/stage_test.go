package main

import (
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const repoRoot = "../../.."

// The staged source builds exactly as the Go buildpack builds it: a
// generated main imports the root package (which must import
// functions-framework's functions package) and starts the framework; no
// test file is shipped.
func TestStagedSourceBuildsLikeTheBuildpack(t *testing.T) {
	out := t.TempDir()
	for target, pkg := range Targets {
		t.Run(target, func(t *testing.T) {
			res, err := Stage(repoRoot, target, out)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.SHA256) != 64 {
				t.Fatalf("hash %q", res.SHA256)
			}
			_ = filepath.Walk(res.Dir, func(p string, info os.FileInfo, err error) error {
				if err == nil && strings.HasSuffix(p, "_test.go") {
					t.Errorf("staged a test file: %s", p)
				}
				return nil
			})
			for _, f := range []string{"go.mod", "go.sum"} {
				if _, err := os.Stat(filepath.Join(res.Dir, f)); err != nil {
					t.Fatalf("%s missing at the source root", f)
				}
			}
			build := "./" + pkg
			if target != "relay" {
				f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(res.Dir, "function.go"), nil, parser.ImportsOnly)
				if err != nil {
					t.Fatal(err)
				}
				imports := map[string]bool{}
				for _, im := range f.Imports {
					p, _ := strconv.Unquote(im.Path.Value)
					imports[p] = true
				}
				if !imports["github.com/GoogleCloudPlatform/functions-framework-go/functions"] || !imports[Module+"/"+pkg] {
					t.Fatalf("root package imports %v", imports)
				}
				main := `package main

import (
	"log"
	"os"

	"github.com/GoogleCloudPlatform/functions-framework-go/funcframework"

	_ "` + Module + `"
)

func main() {
	if err := funcframework.Start(os.Getenv("PORT")); err != nil {
		log.Fatal(err)
	}
}
`
				if err := os.MkdirAll(filepath.Join(res.Dir, "buildpackmain"), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(res.Dir, "buildpackmain", "main.go"), []byte(main), 0o644); err != nil {
					t.Fatal(err)
				}
				build = "./buildpackmain"
			}
			cmd := exec.Command("go", "build", "-o", filepath.Join(t.TempDir(), "bin"), build)
			cmd.Dir = res.Dir
			cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly", "GOWORK=off")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("go build %s in the stage: %v\n%s", build, err, out)
			}
			// The same source gives the same archive.
			again, err := Stage(repoRoot, target, t.TempDir())
			if err != nil || again.SHA256 != res.SHA256 {
				t.Fatalf("staging is not deterministic: %s vs %s (%v)", again.SHA256, res.SHA256, err)
			}
		})
	}
}
