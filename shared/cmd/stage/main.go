// Command stage lays out the source that Google Cloud builds for one
// function (or the relay), and zips it deterministically.
//
// Cloud Functions gen2 builds Go from the uploaded source root: go.mod and
// the function's package must sit there, a _test.go file there breaks the
// build, and `replace ../x` paths are not uploaded. So for each function the
// stage is: go.mod, go.sum, a root package that imports functions-framework's
// functions package and the function's package (whose init registers the
// entry point), and the packages it needs — never a test file.
//
//	go run ./shared/cmd/stage -target CreateOrder -out terraform/.build
//
// It prints a JSON object (dir, zip, sha256), the shape terraform's
// external data source reads.
package main

import (
	"archive/zip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Targets maps each deployable to the package directory it needs.
var Targets = map[string]string{
	"CreateOrder":   "functions/createorder",
	"DeductStock":   "functions/deductstock",
	"ClearCart":     "functions/clearcart",
	"Pay":           "functions/pay",
	"HandleTimeout": "functions/handletimeout",
	"Sweep":         "functions/sweeper",
	"relay":         "shared/cmd/relay",
}

// Module is the module path (go.mod's first line).
const Module = "github.com/ordertimeout/ordertimeout"

func main() {
	target := flag.String("target", "", "entry point (CreateOrder, DeductStock, ClearCart, Pay, HandleTimeout, Sweep) or relay")
	out := flag.String("out", "terraform/.build", "output folder")
	root := flag.String("root", ".", "the repository root")
	flag.Parse()
	res, err := Stage(*root, *target, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stage:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

// Result says where the stage is.
type Result struct {
	Dir    string `json:"dir"`
	Zip    string `json:"zip"`
	SHA256 string `json:"sha256"`
}

// Stage writes the source of target under out/<target>/src and its zip.
func Stage(root, target, out string) (Result, error) {
	pkg, ok := Targets[target]
	if !ok {
		return Result{}, fmt.Errorf("unknown target %q", target)
	}
	dir := filepath.Join(out, target, "src")
	if err := os.RemoveAll(dir); err != nil {
		return Result{}, err
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		if err := copyFile(filepath.Join(root, f), filepath.Join(dir, f)); err != nil {
			return Result{}, err
		}
	}
	// shared/ (what deploys: the test and local-run harness lives under
	// local/) minus other programs' packages.
	skip := func(rel string) bool {
		return strings.HasPrefix(rel, "shared/cmd/") && !strings.HasPrefix(rel, pkg)
	}
	for _, tree := range []string{"shared", pkg} {
		if err := copyTree(root, tree, dir, skip); err != nil {
			return Result{}, err
		}
	}
	if target != "relay" {
		src := fmt.Sprintf(`// Package function is the source root Cloud Functions builds: importing
// %[1]s runs its init, which registers the %[2]s entry point.
package function

import (
	_ "github.com/GoogleCloudPlatform/functions-framework-go/functions"

	_ "%[3]s/%[1]s"
)
`, pkg, target, Module)
		if err := os.WriteFile(filepath.Join(dir, "function.go"), []byte(src), 0o644); err != nil {
			return Result{}, err
		}
	}
	zipPath := filepath.Join(out, target+".zip")
	sum, err := zipDir(dir, zipPath)
	if err != nil {
		return Result{}, err
	}
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	return Result{Dir: abs(dir), Zip: abs(zipPath), SHA256: sum}, nil
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	return os.WriteFile(to, data, 0o644)
}

func copyTree(root, tree, dst string, skip func(string) bool) error {
	return filepath.WalkDir(filepath.Join(root, tree), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if skip(rel) && !(d.IsDir() && rel == tree) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") || strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		return copyFile(path, filepath.Join(dst, rel))
	})
}

// zipDir zips dir with sorted names and a fixed time, so the same source
// gives the same bytes and hash.
func zipDir(dir, zipPath string) (string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		return "", err
	}
	sort.Strings(files)
	f, err := os.Create(zipPath)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	zw := zip.NewWriter(io.MultiWriter(f, h))
	for _, p := range files {
		rel, _ := filepath.Rel(dir, p)
		w, err := zw.CreateHeader(&zip.FileHeader{Name: filepath.ToSlash(rel), Method: zip.Deflate, Modified: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			return "", err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		if _, err := w.Write(data); err != nil {
			return "", err
		}
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
