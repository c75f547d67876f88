package main

import (
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/ordertimeout/ordertimeout/shared/broker"
	"github.com/ordertimeout/ordertimeout/shared/config"
	"github.com/ordertimeout/ordertimeout/shared/store"
)

// tf is the parsed terraform/ folder.
type tf struct {
	t      *testing.T
	files  map[string][]byte
	blocks []*hclsyntax.Block
}

func loadTF(t *testing.T) *tf {
	t.Helper()
	dir := filepath.Join(repoRoot, "terraform")
	paths, _ := filepath.Glob(filepath.Join(dir, "*.tf"))
	if len(paths) == 0 {
		t.Fatal("no terraform files")
	}
	x := &tf{t: t, files: map[string][]byte{}}
	for _, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		f, diags := hclsyntax.ParseConfig(src, p, hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatalf("parse %s: %s", p, diags.Error())
		}
		x.files[p] = src
		x.blocks = append(x.blocks, f.Body.(*hclsyntax.Body).Blocks...)
	}
	return x
}

func (x *tf) text(e hclsyntax.Expression) string {
	r := e.Range()
	return string(x.files[r.Filename][r.Start.Byte:r.End.Byte])
}

// resource returns the body of resource TYPE.NAME.
func (x *tf) resource(typ, name string) *hclsyntax.Body {
	for _, b := range x.blocks {
		if b.Type == "resource" && len(b.Labels) == 2 && b.Labels[0] == typ && b.Labels[1] == name {
			return b.Body
		}
	}
	x.t.Fatalf("resource %s.%s not found", typ, name)
	return nil
}

func (x *tf) resources(typ string) []*hclsyntax.Body {
	var out []*hclsyntax.Body
	for _, b := range x.blocks {
		if b.Type == "resource" && len(b.Labels) == 2 && b.Labels[0] == typ {
			out = append(out, b.Body)
		}
	}
	return out
}

// local returns the expression of local NAME.
func (x *tf) local(name string) hclsyntax.Expression {
	for _, b := range x.blocks {
		if b.Type == "locals" {
			if a, ok := b.Body.Attributes[name]; ok {
				return a.Expr
			}
		}
	}
	x.t.Fatalf("local %s not found", name)
	return nil
}

// variableValidation returns the text of variable NAME's validation
// conditions.
func (x *tf) variableValidation(name string) string {
	for _, b := range x.blocks {
		if b.Type == "variable" && len(b.Labels) == 1 && b.Labels[0] == name {
			var conds []string
			for _, v := range b.Body.Blocks {
				if v.Type == "validation" {
					conds = append(conds, x.text(v.Body.Attributes["condition"].Expr))
				}
			}
			return strings.Join(conds, " && ")
		}
	}
	x.t.Fatalf("variable %s not found", name)
	return ""
}

func (x *tf) literal(e hclsyntax.Expression) string {
	v, diags := e.Value(nil)
	if diags.HasErrors() || !v.Type().Equals(v.Type()) {
		x.t.Fatalf("not a literal: %s", x.text(e))
	}
	return v.AsString()
}

// objectKeys returns the keys of an object constructor.
func (x *tf) objectKeys(e hclsyntax.Expression) map[string]hclsyntax.Expression {
	obj, ok := e.(*hclsyntax.ObjectConsExpr)
	if !ok {
		x.t.Fatalf("not an object: %s", x.text(e))
	}
	out := map[string]hclsyntax.Expression{}
	for _, it := range obj.Items {
		k := strings.Trim(x.text(it.KeyExpr), `"`)
		out[k] = it.ValueExpr
	}
	return out
}

func sortedSet(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return slices.Compact(s)
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return sortedSet(out)
}

// entryPoints scans the function packages for functions.HTTP/CloudEvent
// registrations.
func entryPoints(t *testing.T) map[string]string {
	re := regexp.MustCompile(`functions\.(?:HTTP|CloudEvent)\("([A-Za-z]+)"`)
	out := map[string]string{}
	paths, _ := filepath.Glob(filepath.Join(repoRoot, "functions", "*", "*.go"))
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		src, _ := os.ReadFile(p)
		for _, m := range re.FindAllStringSubmatch(string(src), -1) {
			rel, _ := filepath.Rel(repoRoot, filepath.Dir(p))
			out[m[1]] = filepath.ToSlash(rel)
		}
	}
	return out
}

// codeCalls returns, per function package, the peers it calls: the URL
// settings its code names.
func codeCalls(t *testing.T, pkg string) []string {
	peers := map[string]string{"EnvDeductStockURL": "DeductStock", "EnvClearCartURL": "ClearCart", "EnvPayURL": "Pay"}
	var out []string
	paths, _ := filepath.Glob(filepath.Join(repoRoot, pkg, "*.go"))
	for _, p := range paths {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		src, _ := os.ReadFile(p)
		for env, peer := range peers {
			if strings.Contains(string(src), "config."+env) {
				out = append(out, peer)
			}
		}
	}
	return sortedSet(out)
}

func TestTerraformMatchesCode(t *testing.T) {
	x := loadTF(t)

	// Entry points: code registrations = terraform's functions = stage targets.
	eps := entryPoints(t)
	fns := x.objectKeys(x.local("functions"))
	if got, want := keysOf(fns), keysOf(eps); !slices.Equal(got, want) {
		t.Fatalf("terraform functions %v, code registers %v", got, want)
	}
	for name, body := range fns {
		f := x.objectKeys(body)
		if pkg := x.literal(f["package"]); pkg != eps[name] || Targets[name] != pkg {
			t.Errorf("%s: terraform package %q, code %q, stage %q", name, pkg, eps[name], Targets[name])
		}
		// Function → function edges: code and terraform agree.
		var calls []string
		for _, c := range f["calls"].(*hclsyntax.TupleConsExpr).Exprs {
			calls = append(calls, x.literal(c))
		}
		if got, want := sortedSet(calls), codeCalls(t, eps[name]); !slices.Equal(got, want) {
			t.Errorf("%s calls %v in terraform, %v in code", name, got, want)
		}
	}
	if len(Targets) != len(fns)+1 {
		t.Errorf("stage targets %v: want the functions plus the relay", keysOf(Targets))
	}

	// Runtime matches go.mod's go line.
	mod, _ := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	m := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(string(mod))
	if got, want := x.literal(x.local("go_runtime")), "go"+m[1]+m[2]; got != want {
		t.Errorf("go_runtime %q, go.mod says %q", got, want)
	}
	// The go line is the language version (x.y or x.y.0) and names no
	// toolchain: the runtime's own Go of that line builds the function
	// without downloading a newer one, whatever patch release it is.
	if line := regexp.MustCompile(`(?m)^go (\S+)`).FindStringSubmatch(string(mod))[1]; !regexp.MustCompile(`^\d+\.\d+(\.0)?$`).MatchString(line) ||
		regexp.MustCompile(`(?m)^toolchain `).Match(mod) {
		t.Errorf("go.mod's go line %q (or a toolchain line) asks for a patch release the runtime may not have", line)
	}

	// Function env: exactly config.FunctionVars.
	set := keysOf(x.objectKeys(x.local("function_env")))
	fn := x.resource("google_cloudfunctions2_function", "fn")
	var svc *hclsyntax.Body
	for _, b := range fn.Blocks {
		if b.Type == "service_config" {
			svc = b.Body
		}
	}
	// environment_variables = merge(local.function_env, { per-function keys }).
	merged := x.text(svc.Attributes["environment_variables"].Expr)
	if call, ok := svc.Attributes["environment_variables"].Expr.(*hclsyntax.FunctionCallExpr); ok && call.Name == "merge" {
		for _, arg := range call.Args[1:] {
			set = append(set, keysOf(x.objectKeys(arg))...)
		}
	} else {
		t.Errorf("the functions' environment_variables is not merge(local.function_env, {...})")
	}
	for _, b := range svc.Blocks {
		if b.Type == "secret_environment_variables" {
			set = append(set, x.literal(b.Body.Attributes["key"].Expr))
		}
	}
	if got, want := sortedSet(set), sortedSet(config.FunctionVars); !slices.Equal(got, want) {
		t.Errorf("terraform sets %v on the functions, the code reads %v", got, want)
	}

	// Relay env: exactly config.RelayVars, PORT being Cloud Run's.
	relay := x.resource("google_cloud_run_v2_service", "relay")
	var envs []string
	relayMode := ""
	var walk func(b *hclsyntax.Body)
	walk = func(b *hclsyntax.Body) {
		for _, blk := range b.Blocks {
			if blk.Type == "env" {
				name := x.literal(blk.Body.Attributes["name"].Expr)
				envs = append(envs, name)
				v, ok := blk.Body.Attributes["value"]
				if ok && name == "RELAY_TARGET_URL" && !strings.Contains(x.text(v.Expr), `fn_url["HandleTimeout"]`) {
					t.Errorf("the relay's target is %s, not HandleTimeout", x.text(v.Expr))
				}
				if ok && name == config.EnvBrokerMode {
					relayMode = x.text(v.Expr)
				}
			}
			walk(blk.Body)
		}
	}
	walk(relay)
	if got, want := sortedSet(append(envs, config.EnvPort)), sortedSet(config.RelayVars); !slices.Equal(got, want) {
		t.Errorf("terraform sets %v on the relay (+PORT), the relay reads %v", got, want)
	}

	// Broker mode: the functions (which publish) and the relay (which
	// re-publishes) take it from one variable, whose validation accepts
	// exactly the code's modes.
	fnMode := x.text(x.objectKeys(x.local("function_env"))[config.EnvBrokerMode])
	if fnMode != "var.broker_mode" || relayMode != "var.broker_mode" {
		t.Errorf("BROKER_MODE is %s on the functions and %s on the relay, want var.broker_mode on both", fnMode, relayMode)
	}
	modes := x.variableValidation("broker_mode")
	if !strings.Contains(modes, `["`+broker.ModeLadder+`", "`+broker.ModeNative+`", "`+broker.ModePlugin+`"]`) {
		t.Errorf("broker_mode's validation %s does not list the modes %q, %q and %q", modes, broker.ModeLadder, broker.ModeNative, broker.ModePlugin)
	}

	// Indexes: one per query shape, and no other.
	var declared []string
	for _, b := range x.resources("google_firestore_index") {
		shape := x.literal(b.Attributes["collection"].Expr)
		for _, f := range b.Blocks {
			if f.Type == "fields" {
				shape += " " + x.literal(f.Body.Attributes["field_path"].Expr) + ":" + x.literal(f.Body.Attributes["order"].Expr)
			}
		}
		declared = append(declared, shape)
	}
	var queried []string
	for _, q := range store.Queries {
		shape := q.Collection
		for _, f := range q.Fields {
			shape += " " + f.Path + ":" + f.Order
		}
		queried = append(queried, shape)
	}
	if got, want := sortedSet(declared), sortedSet(queried); !slices.Equal(got, want) {
		t.Errorf("terraform indexes %v, code queries %v", got, want)
	}

	// Single-field exemptions: every field the code writes, and the
	// resource applies exactly that list with an empty index_config.
	exempt := map[string][]string{}
	for col, fields := range x.objectKeys(x.local("unindexed_fields")) {
		tuple, ok := fields.(*hclsyntax.TupleConsExpr)
		if !ok {
			t.Fatalf("unindexed_fields.%s is not a list", col)
		}
		for _, f := range tuple.Exprs {
			exempt[col] = append(exempt[col], x.literal(f))
		}
		exempt[col] = sortedSet(exempt[col])
	}
	if want := store.StoredFields(); !maps.EqualFunc(exempt, want, slices.Equal) {
		t.Errorf("terraform exempts %v from single-field indexes, the code writes %v", exempt, want)
	}
	field := x.resource("google_firestore_field", "unindexed")
	if !strings.Contains(x.text(field.Attributes["for_each"].Expr), "local.unindexed_fields") || len(field.Blocks) != 2 ||
		field.Blocks[0].Type != "index_config" || len(field.Blocks[0].Body.Attributes)+len(field.Blocks[0].Body.Blocks) != 0 {
		t.Errorf("google_firestore_field.unindexed does not apply an empty index_config to local.unindexed_fields")
	}
	// Retention: the TTL policies are exactly the code's expiry fields, each
	// one a stored field, applied by the same resource.
	var ttl []string
	ttlTuple, ok := x.local("ttl_fields").(*hclsyntax.TupleConsExpr)
	if !ok {
		t.Fatal("local.ttl_fields is not a list")
	}
	for _, f := range ttlTuple.Exprs {
		ttl = append(ttl, x.literal(f))
		col, name, _ := strings.Cut(x.literal(f), ".")
		if !slices.Contains(exempt[col], name) {
			t.Errorf("TTL field %s is not a stored field", x.literal(f))
		}
	}
	if got, want := sortedSet(ttl), sortedSet(store.TTLFields()); !slices.Equal(got, want) {
		t.Errorf("terraform's TTL fields %v, the code's %v", got, want)
	}
	if b := field.Blocks[1]; b.Type != "dynamic" || len(b.Labels) != 1 || b.Labels[0] != "ttl_config" ||
		!strings.Contains(x.text(b.Body.Attributes["for_each"].Expr), "local.ttl_fields") {
		t.Errorf("google_firestore_field.unindexed does not declare ttl_config for local.ttl_fields")
	}

	// Invocation rights follow the edges: private functions grant run.invoker
	// to their callers, public ones name their callers for the in-code check.
	ext := x.objectKeys(x.local("external_invokers"))
	if !strings.Contains(x.text(ext["HandleTimeout"]), `"relay"`) || !strings.Contains(x.text(ext["Sweep"]), `"scheduler"`) {
		t.Errorf("external invokers %s", x.text(x.local("external_invokers")))
	}
	callers := x.text(x.resource("google_cloud_run_service_iam_member", "callers").Attributes["for_each"].Expr)
	if !strings.Contains(callers, "local.callers_of[target]") || !strings.Contains(callers, "!f.public") {
		t.Errorf("private invokers are not derived from callers_of: %s", callers)
	}
	if !strings.Contains(merged, "local.callers_of[each.key]") {
		t.Errorf("INTERNAL_ALLOWED_CALLERS is not derived from callers_of: %s", merged)
	}
	if !strings.Contains(merged, "INTERNAL_AUDIENCE = local.fn_url[each.key]") {
		t.Errorf("INTERNAL_AUDIENCE is not each function's own URL: %s", merged)
	}
	for name, body := range fns {
		public := x.text(x.objectKeys(body)["public"]) == "true"
		if wantPublic := name != "HandleTimeout" && name != "Sweep"; public != wantPublic {
			t.Errorf("%s public=%v", name, public)
		}
	}
	sched := x.resource("google_cloud_scheduler_job", "sweep")
	if !strings.Contains(string(x.files[sched.Range().Filename][sched.Range().Start.Byte:sched.Range().End.Byte]), `fn_url["Sweep"]`) {
		t.Error("the scheduler does not call Sweep")
	}
}

// The alerts and the dashboard read the metrics the code exports: every
// workload.googleapis.com/<name> in terraform/monitoring.tf names an
// instrument the functions or the relay create.
func TestMonitoringReadsTheCodesMetrics(t *testing.T) {
	x := loadTF(t)
	var code string
	for _, f := range []string{"shared/telemetry/metrics.go", "shared/relay/metrics.go"} {
		src, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			t.Fatal(err)
		}
		code += string(src)
	}
	names := x.objectKeys(x.local("metric"))
	if len(names) < 10 {
		t.Fatalf("local.metric has %d entries", len(names))
	}
	for key, e := range names {
		full := x.literal(e)
		name, ok := strings.CutPrefix(full, "workload.googleapis.com/")
		if !ok || !strings.Contains(code, `"`+name+`"`) {
			t.Errorf("local.metric.%s = %q: no instrument of that name in the code", key, full)
		}
	}
	for _, typ := range []string{"google_monitoring_alert_policy", "google_monitoring_dashboard"} {
		if len(x.resources(typ)) == 0 {
			t.Errorf("no %s", typ)
		}
	}
	if n := len(x.resources("google_monitoring_alert_policy")); n < 5 {
		t.Errorf("%d alert policies, want the five the README lists", n)
	}
	// A first apply on a project that never ran the code: a condition on a
	// metric the code exports (which exists only once exported) must not
	// be validated at creation, and a relay that exports nothing at all
	// must still fire the relay alert.
	absent := false
	for _, policy := range x.resources("google_monitoring_alert_policy") {
		for _, c := range policy.Blocks {
			if c.Type != "conditions" {
				continue
			}
			for _, cond := range c.Body.Blocks {
				text := string(x.files[cond.Range().Filename][cond.Range().Start.Byte:cond.Range().End.Byte])
				switch cond.Type {
				case "condition_threshold", "condition_absent":
					if strings.Contains(text, "local.metric") || strings.Contains(text, "workload.googleapis.com") {
						t.Errorf("a %s on the code's metrics is validated at creation and fails on a new project:\n%s", cond.Type, text)
					}
				case "condition_prometheus_query_language":
					dmv, ok := cond.Body.Attributes["disable_metric_validation"]
					if !ok || x.text(dmv.Expr) != "true" {
						t.Errorf("a PromQL condition without disable_metric_validation = true:\n%s", text)
					}
					q := x.text(cond.Body.Attributes["query"].Expr)
					if !strings.Contains(q, "local.promql.") {
						t.Errorf("a PromQL condition that reads no local.promql metric: %s", q)
					}
					if strings.Contains(q, "absent_over_time(${local.promql.connected}") {
						absent = true
					}
				}
			}
		}
	}
	if !absent {
		t.Error("no alert fires when the relay exports nothing (absent_over_time of relay.connected)")
	}
}

// What would stop or break a first `terraform apply` on an empty project
// in an organisation with today's defaults (issue #24), held where a test
// can hold it: zones come from the region, no secret sits in instance
// metadata, everything that reads a secret's latest version waits for a
// version, builds run as the module's own build account, the scheduler
// never gives up on a sweep that is still running, and the APIs the
// module uses are enabled.
func TestFirstApplyOnANewProject(t *testing.T) {
	x := loadTF(t)
	all := ""
	for _, src := range x.files {
		all += string(src)
	}
	vm := x.text(x.resource("google_compute_instance", "rabbit").Attributes["zone"].Expr)
	if !strings.Contains(vm, "local.node_zones") || !strings.Contains(x.text(x.local("node_zones")), "data.google_compute_zones.up.names") {
		t.Errorf("the broker nodes' zones do not come from the region's zones: zone = %s", vm)
	}
	if m := regexp.MustCompile(`var\.region\}-[a-z]"|\["b", "c", "d"\]|-[a-f]"\s*$`).FindString(all); m != "" {
		t.Errorf("a zone letter written by hand: %q", m)
	}
	// Instance metadata: the startup script's arguments name secrets, never hold them.
	inst := x.resource("google_compute_instance", "rabbit")
	md := x.text(inst.Attributes["metadata"].Expr)
	if strings.Contains(md, "random_password") || strings.Contains(md, ".result") {
		t.Errorf("instance metadata carries a secret: %s", md)
	}
	if !strings.Contains(md, "secret_id") {
		t.Errorf("the startup script is not told which secrets to read: %s", md)
	}
	script, err := os.ReadFile(filepath.Join(repoRoot, "terraform", "rabbitmq-startup.sh.tftpl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), "secretmanager.googleapis.com") || !strings.Contains(string(script), "RABBITMQ_USE_LONGNAME=true") {
		t.Error("the startup script neither reads its secrets from Secret Manager nor uses long node names")
	}
	if !strings.Contains(x.text(x.local("node_fqdns")), ".internal") {
		t.Errorf("node names do not resolve across zones: %s", x.text(x.local("node_fqdns")))
	}
	hc := x.resource("google_compute_health_check", "amqp")
	if len(hc.Blocks) == 0 || hc.Blocks[0].Type != "http_health_check" || !strings.Contains(string(script), "/ready") {
		t.Error("the broker's health check is not the node's readiness (clustered, user ready)")
	}
	// Secrets read as "latest" have a version first.
	for _, c := range []struct{ typ, name, version string }{
		{"google_cloudfunctions2_function", "fn", "google_secret_manager_secret_version.amqp_url"},
		{"google_cloud_run_v2_service", "relay", "google_secret_manager_secret_version.amqp_url"},
		{"google_compute_instance", "rabbit", "google_secret_manager_secret_version.broker"},
	} {
		dep, ok := x.resource(c.typ, c.name).Attributes["depends_on"]
		if !ok || !strings.Contains(x.text(dep.Expr), c.version) {
			t.Errorf("%s.%s reads a secret but does not wait for %s", c.typ, c.name, c.version)
		}
	}
	fn := x.resource("google_cloudfunctions2_function", "fn")
	if dep := x.text(fn.Attributes["depends_on"].Expr); !strings.Contains(dep, "google_firestore_database.default") || strings.Count(dep, "google_firestore_index.") != len(x.resources("google_firestore_index")) {
		t.Errorf("the functions do not wait for the database and every index: %s", dep)
	}
	// Builds.
	build := ""
	for _, b := range fn.Blocks {
		if b.Type == "build_config" {
			if a, ok := b.Body.Attributes["service_account"]; ok {
				build = x.text(a.Expr)
			}
		}
	}
	if !strings.Contains(build, "google_service_account.build") {
		t.Errorf("the functions' builds do not run as the build account: %q", build)
	}
	relayImage := string(x.files[filepath.Join(repoRoot, "terraform", "relay.tf")])
	if !strings.Contains(relayImage, "--service-account ${google_service_account.build.id}") || !strings.Contains(relayImage, "data.google_client_config.me.access_token") {
		t.Error("the relay image is not built as the build account with terraform's credentials")
	}
	// The scheduler's attempt deadline is not longer than Sweep's timeout.
	if !strings.Contains(x.text(x.resource("google_cloud_scheduler_job", "sweep").Attributes["attempt_deadline"].Expr), "local.sweep_timeout_seconds") ||
		!strings.Contains(x.text(fn.Blocks[1].Body.Attributes["timeout_seconds"].Expr), "local.sweep_timeout_seconds") {
		t.Error("Sweep's timeout and the scheduler's attempt deadline are not the one local.sweep_timeout_seconds")
	}
	apis := x.text(x.local("apis"))
	for _, api := range []string{"cloudresourcemanager", "pubsub", "telemetry", "secretmanager", "cloudbuild"} {
		if !strings.Contains(apis, `"`+api+`.googleapis.com"`) {
			t.Errorf("API %s is not enabled", api)
		}
	}
}

// shared/ is what deploys: no package of it (tests aside) imports the test
// and local-run harness under local/.
func TestSharedImportsNoLocalHarness(t *testing.T) {
	err := filepath.WalkDir(filepath.Join(repoRoot, "shared"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return err
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.Contains(string(src), `"github.com/ordertimeout/ordertimeout/local/`) {
			t.Errorf("%s imports a package of local/", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
