package main

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// The real providers cannot be downloaded on these machines, so
// `terraform validate` cannot run in CI. This test holds terraform/ to the
// providers' schemas (`terraform providers schema -json` of the versions
// terraform/versions.tf allows, kept in ../shared/terraform-schemas/): every
// resource and data block's attributes and nested blocks exist, none that
// is required is missing, nothing computed-only or deprecated is set,
// nested blocks respect max_items; and no output, count or for_each, and no
// argument the schema does not mark sensitive, takes its value from a
// sensitive variable unless through nonsensitive() — the one error
// `terraform validate` found that a schema alone does not show.

type schemaAttr struct {
	Type       json.RawMessage `json:"type"`
	NestedType json.RawMessage `json:"nested_type"`
	Required   bool            `json:"required"`
	Optional   bool            `json:"optional"`
	Computed   bool            `json:"computed"`
	Sensitive  bool            `json:"sensitive"`
	Deprecated bool            `json:"deprecated"`
}

type schemaBlock struct {
	Attributes map[string]schemaAttr      `json:"attributes"`
	BlockTypes map[string]schemaBlockType `json:"block_types"`
	Deprecated bool                       `json:"deprecated"`
}

type schemaBlockType struct {
	NestingMode string      `json:"nesting_mode"`
	Block       schemaBlock `json:"block"`
	MinItems    int         `json:"min_items"`
	MaxItems    int         `json:"max_items"`
}

type providerSchema struct {
	Resources   map[string]struct{ Block schemaBlock } `json:"resource_schemas"`
	DataSources map[string]struct{ Block schemaBlock } `json:"data_source_schemas"`
}

type schemas struct {
	name      string
	providers map[string]providerSchema
}

// schemaDir is ../shared/terraform-schemas beside the checkout (or
// $TF_SCHEMA_DIR).
func schemaDir(t *testing.T) string {
	if d := os.Getenv("TF_SCHEMA_DIR"); d != "" {
		return d
	}
	return filepath.Join(repoRoot, "..", "shared", "terraform-schemas")
}

func loadSchemas(t *testing.T) []schemas {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join(schemaDir(t), "*.schema.json.gz"))
	if len(paths) == 0 {
		t.Fatalf("no provider schemas in %s: they sit in shared/terraform-schemas beside the checkout (or set TF_SCHEMA_DIR)", schemaDir(t))
	}
	var out []schemas
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			ProviderSchemas map[string]providerSchema `json:"provider_schemas"`
		}
		err = json.NewDecoder(zr).Decode(&doc)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out = append(out, schemas{name: filepath.Base(p), providers: doc.ProviderSchemas})
	}
	return out
}

// lookup finds the schema of a resource or data source type.
func (s schemas) lookup(kind, typ string) (schemaBlock, bool) {
	for _, p := range s.providers {
		m := p.Resources
		if kind == "data" {
			m = p.DataSources
		}
		if r, ok := m[typ]; ok {
			return r.Block, true
		}
	}
	return schemaBlock{}, false
}

// metaArgs are terraform's own arguments and blocks in resource and data blocks.
var (
	metaAttrs  = []string{"count", "for_each", "depends_on", "provider"}
	metaBlocks = []string{"lifecycle", "connection", "provisioner"}
)

// checkSchema returns every way files' resource and data blocks break s.
func checkSchema(files map[string]*hclsyntax.Body, s schemas) []string {
	var problems []string
	for _, body := range files {
		for _, b := range body.Blocks {
			if (b.Type != "resource" && b.Type != "data") || len(b.Labels) != 2 {
				continue
			}
			where := fmt.Sprintf("%s %s.%s (%s)", b.Type, b.Labels[0], b.Labels[1], at(b.DefRange()))
			sb, ok := s.lookup(b.Type, b.Labels[0])
			if !ok {
				problems = append(problems, where+": no such type in "+s.name)
				continue
			}
			problems = append(problems, checkBlock(where, b.Body, sb, true)...)
		}
	}
	sort.Strings(problems)
	return problems
}

func checkBlock(where string, body *hclsyntax.Body, sb schemaBlock, top bool) []string {
	var problems []string
	if sb.Deprecated {
		problems = append(problems, where+": deprecated block")
	}
	for name := range body.Attributes {
		if top && slices.Contains(metaAttrs, name) {
			continue
		}
		a, ok := sb.Attributes[name]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s: unknown attribute %q", where, name))
		case a.Computed && !a.Optional && !a.Required:
			problems = append(problems, fmt.Sprintf("%s: %q is computed only; it cannot be set", where, name))
		case a.Deprecated:
			problems = append(problems, fmt.Sprintf("%s: %q is deprecated", where, name))
		}
	}
	for name, a := range sb.Attributes {
		if _, ok := body.Attributes[name]; a.Required && !ok {
			problems = append(problems, fmt.Sprintf("%s: required attribute %q is missing", where, name))
		}
	}
	counts := map[string]int{}
	dynamic := map[string]bool{}
	for _, nb := range body.Blocks {
		typ, content := nb.Type, nb.Body
		if top && slices.Contains(metaBlocks, typ) {
			continue
		}
		if typ == "dynamic" && len(nb.Labels) == 1 {
			typ, content, dynamic[nb.Labels[0]] = nb.Labels[0], nil, true
			for _, c := range nb.Body.Blocks {
				if c.Type == "content" {
					content = c.Body
				}
			}
		}
		bt, ok := sb.BlockTypes[typ]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: unknown block %q", where, typ))
			continue
		}
		counts[typ]++
		if content != nil {
			problems = append(problems, checkBlock(where+" > "+typ, content, bt.Block, false)...)
		}
	}
	for name, bt := range sb.BlockTypes {
		n := counts[name]
		if dynamic[name] {
			continue // how many is known at plan time only
		}
		if n < bt.MinItems {
			problems = append(problems, fmt.Sprintf("%s: block %q needs at least %d", where, name, bt.MinItems))
		}
		if bt.MaxItems > 0 && n > bt.MaxItems {
			problems = append(problems, fmt.Sprintf("%s: block %q at most %d, found %d", where, name, bt.MaxItems, n))
		}
		if n > 0 && bt.Block.Deprecated {
			problems = append(problems, fmt.Sprintf("%s: block %q is deprecated", where, name))
		}
	}
	return problems
}

// sensitiveRefs reports whether e reads a sensitive variable or local
// outside a nonsensitive() call.
func sensitiveRefs(e hclsyntax.Expression, sensitive map[string]bool) []string {
	var cleared []hcl.Range
	_ = hclsyntax.VisitAll(e, func(n hclsyntax.Node) hcl.Diagnostics {
		if c, ok := n.(*hclsyntax.FunctionCallExpr); ok && c.Name == "nonsensitive" {
			cleared = append(cleared, c.Range())
		}
		return nil
	})
	var out []string
	for _, tr := range e.Variables() {
		name := tr.RootName()
		if len(tr) > 1 {
			if a, ok := tr[1].(hcl.TraverseAttr); ok {
				name += "." + a.Name
			}
		}
		if !sensitive[name] {
			continue
		}
		inside := false
		for _, r := range cleared {
			inside = inside || r.ContainsOffset(tr.SourceRange().Start.Byte)
		}
		if !inside {
			out = append(out, name)
		}
	}
	return out
}

// checkSensitive returns every place where a sensitive variable's value
// (or a local derived from one) would reach what terraform refuses it in.
func checkSensitive(files map[string]*hclsyntax.Body, s schemas) []string {
	sensitive := map[string]bool{}
	for _, body := range files {
		for _, b := range body.Blocks {
			if b.Type == "variable" && len(b.Labels) == 1 {
				if a, ok := b.Body.Attributes["sensitive"]; ok {
					if v, d := a.Expr.Value(nil); !d.HasErrors() && v.True() {
						sensitive["var."+b.Labels[0]] = true
					}
				}
			}
		}
	}
	// Locals derived from sensitive values are sensitive, transitively.
	for changed := true; changed; {
		changed = false
		for _, body := range files {
			for _, b := range body.Blocks {
				if b.Type != "locals" {
					continue
				}
				for name, a := range b.Body.Attributes {
					if !sensitive["local."+name] && len(sensitiveRefs(a.Expr, sensitive)) > 0 {
						sensitive["local."+name], changed = true, true
					}
				}
			}
		}
	}
	var problems []string
	report := func(where string, e hclsyntax.Expression) {
		for _, ref := range sensitiveRefs(e, sensitive) {
			problems = append(problems, fmt.Sprintf("%s takes the sensitive %s (wrap what is not secret in nonsensitive())", where, ref))
		}
	}
	for _, body := range files {
		for _, b := range body.Blocks {
			switch {
			case b.Type == "output" && len(b.Labels) == 1:
				if a, ok := b.Body.Attributes["sensitive"]; ok {
					if v, d := a.Expr.Value(nil); !d.HasErrors() && v.True() {
						continue
					}
				}
				if a, ok := b.Body.Attributes["value"]; ok {
					report(fmt.Sprintf("output %q (%s)", b.Labels[0], at(a.SrcRange)), a.Expr)
				}
			case (b.Type == "resource" || b.Type == "data") && len(b.Labels) == 2:
				sb, _ := s.lookup(b.Type, b.Labels[0])
				where := fmt.Sprintf("%s.%s", b.Labels[0], b.Labels[1])
				for _, meta := range []string{"count", "for_each"} {
					if a, ok := b.Body.Attributes[meta]; ok {
						report(fmt.Sprintf("%s %s (%s)", where, meta, at(a.SrcRange)), a.Expr)
					}
				}
				problems = append(problems, sensitiveArgs(where, b.Body, sb, sensitive)...)
			}
		}
	}
	sort.Strings(problems)
	return problems
}

// sensitiveArgs reports arguments the schema does not mark sensitive that
// take a sensitive value, in a block and its nested blocks.
func sensitiveArgs(where string, body *hclsyntax.Body, sb schemaBlock, sensitive map[string]bool) []string {
	var problems []string
	for name, a := range body.Attributes {
		if sa, ok := sb.Attributes[name]; !ok || sa.Sensitive {
			continue
		}
		for _, ref := range sensitiveRefs(a.Expr, sensitive) {
			problems = append(problems, fmt.Sprintf("%s.%s (%s) takes the sensitive %s, and the provider does not keep it secret", where, name, at(a.SrcRange), ref))
		}
	}
	for _, nb := range body.Blocks {
		if bt, ok := sb.BlockTypes[nb.Type]; ok {
			problems = append(problems, sensitiveArgs(where+"."+nb.Type, nb.Body, bt.Block, sensitive)...)
		}
	}
	return problems
}

func at(r hcl.Range) string { return fmt.Sprintf("%s:%d", filepath.Base(r.Filename), r.Start.Line) }

func parseTF(t *testing.T, srcs map[string]string) map[string]*hclsyntax.Body {
	t.Helper()
	out := map[string]*hclsyntax.Body{}
	for name, src := range srcs {
		f, diags := hclsyntax.ParseConfig([]byte(src), name, hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatalf("parse %s: %s", name, diags.Error())
		}
		out[name] = f.Body.(*hclsyntax.Body)
	}
	return out
}

func TestTerraformMatchesProviderSchema(t *testing.T) {
	x := loadTF(t)
	srcs := map[string]string{}
	for name, src := range x.files {
		srcs[name] = string(src)
	}
	files := parseTF(t, srcs)
	lowest := providerFloor(t, srcs[filepath.Join(repoRoot, "terraform", "versions.tf")])
	checked := 0
	for _, s := range loadSchemas(t) {
		if v := schemaVersion(s.name); v != nil && versionLess(v, lowest) {
			t.Logf("%s: below versions.tf's floor %v, not checked", s.name, lowest)
			continue
		}
		checked++
		for _, p := range append(checkSchema(files, s), checkSensitive(files, s)...) {
			t.Errorf("%s: %s", s.name, p)
		}
	}
	if checked == 0 {
		t.Fatalf("no provider schema at or above versions.tf's floor %v in %s", lowest, schemaDir(t))
	}
}

// providerFloor reads the google provider's lowest admitted version from
// versions.tf (its ">= X.Y" constraint).
func providerFloor(t *testing.T, versions string) []int {
	t.Helper()
	m := regexp.MustCompile(`(?s)google\s*=\s*\{.*?version\s*=\s*"\s*>=\s*([0-9.]+)`).FindStringSubmatch(versions)
	if m == nil {
		t.Fatal("versions.tf: no \">= X.Y\" constraint on the google provider")
	}
	return parseVersion(m[1])
}

// schemaVersion reads the version from a schema file's name
// (providers-google-7.45.0.schema.json.gz).
func schemaVersion(name string) []int {
	m := regexp.MustCompile(`-([0-9]+\.[0-9]+\.[0-9]+)\.schema`).FindStringSubmatch(name)
	if m == nil {
		return nil
	}
	return parseVersion(m[1])
}

func parseVersion(s string) []int {
	var out []int
	for _, p := range strings.Split(s, ".") {
		n, _ := strconv.Atoi(p)
		out = append(out, n)
	}
	return out
}

func versionLess(a, b []int) bool {
	for i := range max(len(a), len(b)) {
		x, y := 0, 0
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// The checks catch what they are for: each broken copy of a small, valid
// configuration is reported, and the valid one is not.
func TestSchemaCheckCatchesBrokenCopies(t *testing.T) {
	all := loadSchemas(t)
	valid := `
variable "secret" {
  type      = string
  sensitive = true
}
locals {
  has_secret = nonsensitive(var.secret != "")
  derived    = "x${var.secret}"
}
resource "google_secret_manager_secret" "s" {
  secret_id = "s"
  replication {
    auto {}
  }
}
resource "google_secret_manager_secret_version" "v" {
  count       = local.has_secret ? 1 : 0
  secret      = google_secret_manager_secret.s.id
  secret_data = local.derived
}
output "has_secret" {
  value = local.has_secret
}
output "derived" {
  value     = local.derived
  sensitive = true
}
`
	broken := map[string]struct{ from, to, want string }{
		"unknown attribute":    {`secret_id = "s"`, "secret_id = \"s\"\n  colour = \"red\"", `unknown attribute "colour"`},
		"unknown block":        {"auto {}", "auto {}\n    wibble {}", `unknown block "wibble"`},
		"missing required":     {`secret_id = "s"`, ``, `required attribute "secret_id" is missing`},
		"computed only set":    {`secret_id = "s"`, "secret_id = \"s\"\n  create_time = \"now\"", `"create_time" is computed only`},
		"max_items exceeded":   {"replication {\n    auto {}\n  }", "replication {\n    auto {}\n  }\n  replication {\n    auto {}\n  }", `block "replication" at most 1`},
		"min_items missing":    {"replication {\n    auto {}\n  }", "", `block "replication" needs at least 1`},
		"sensitive output":     {"value = local.has_secret", "value = local.derived == \"\" ? \"a\" : \"b\"", `output "has_secret"`},
		"sensitive count":      {"count       = local.has_secret ? 1 : 0", "count       = var.secret != \"\" ? 1 : 0", `count`},
		"sensitive into plain": {"secret      = google_secret_manager_secret.s.id", "secret      = var.secret", `secret_manager_secret_version.v.secret`},
	}
	for _, s := range all {
		if p := append(checkSchema(parseTF(t, map[string]string{"ok.tf": valid}), s), checkSensitive(parseTF(t, map[string]string{"ok.tf": valid}), s)...); len(p) > 0 {
			t.Fatalf("%s: the valid configuration was refused: %v", s.name, p)
		}
		for name, b := range broken {
			if !strings.Contains(valid, b.from) {
				t.Fatalf("%s: %q is not in the valid configuration", name, b.from)
			}
			files := parseTF(t, map[string]string{"broken.tf": strings.Replace(valid, b.from, b.to, 1)})
			p := strings.Join(append(checkSchema(files, s), checkSensitive(files, s)...), "\n")
			if !strings.Contains(p, b.want) {
				t.Errorf("%s, %s: not caught (want %q), got:\n%s", s.name, name, b.want, p)
			}
		}
	}
	// A deprecated attribute is reported: find one in the schema.
	for _, s := range all {
		typ, attr := "", ""
		for name, r := range s.providers["registry.terraform.io/hashicorp/google"].Resources {
			for a, sa := range r.Block.Attributes {
				if sa.Deprecated && sa.Optional && (typ == "" || name+a < typ+attr) {
					typ, attr = name, a
				}
			}
		}
		if typ == "" {
			continue
		}
		sb, _ := s.lookup("resource", typ)
		var req []string
		for a, sa := range sb.Attributes {
			if sa.Required {
				req = append(req, fmt.Sprintf("%s = \"x\"", a))
			}
		}
		src := fmt.Sprintf("resource %q \"d\" {\n%s\n%s = \"x\"\n}\n", typ, strings.Join(req, "\n"), attr)
		p := strings.Join(checkSchema(parseTF(t, map[string]string{"d.tf": src}), s), "\n")
		if !strings.Contains(p, fmt.Sprintf("%q is deprecated", attr)) {
			t.Errorf("%s: deprecated %s.%s not caught:\n%s", s.name, typ, attr, p)
		}
	}
}
