// Package rabbitcluster runs a RabbitMQ cluster of its own on this machine,
// for the node-loss tests and for `make run` with RABBITMQ_CLUSTER=3: nodes
// with their own names, AMQP and distribution ports, data, log, pid and
// config files, joined with each other (never with the machine's own node).
// They share the machine's Erlang cookie and epmd.
//
// With RABBITMQ_CHROOT set (the RabbitMQ 4.3 run: the root that
// local/rabbitmq43/rabbitmq43.sh installs), the nodes run that root's
// RabbitMQ, inside it, as RABBITMQ_CHROOT_UID, with its cookie and epmd.
package rabbitcluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Cluster is a running cluster.
type Cluster struct {
	Nodes []*Node
	dir   string
}

// Node is one node of a Cluster.
type Node struct {
	Name string // rabbit name, e.g. otc0-ab12@localhost
	Port int    // AMQP, on 127.0.0.1
	URL  string
	dir  string // on the host
	env  []string
	jail *jail
}

// jail is where the nodes run: the host (nil), or a chroot.
type jail struct {
	root string
	uid  string
}

// inside is a host path as the chroot sees it.
func (j *jail) inside(p string) string {
	if j == nil {
		return p
	}
	return strings.TrimPrefix(p, j.root)
}

// command runs a RabbitMQ script (rabbitmq-server, rabbitmqctl) with env.
func (j *jail) command(env []string, script string, args ...string) *exec.Cmd {
	if j == nil {
		cmd := exec.Command(script, args...)
		cmd.Env = env
		return cmd
	}
	// Inside: the package's own scripts (Debian's wrappers switch users),
	// with the 4.3 node's cookie (HOME) and epmd.
	full := append([]string{"--userspec=" + j.uid + ":" + j.uid, j.root, "env", "PATH=/usr/lib/rabbitmq/bin:/usr/bin:/bin",
		"HOME=/var/lib/ot43", "ERL_EPMD_PORT=" + envOr("RABBITMQ_CHROOT_EPMD_PORT", "4370")}, env...)
	full = append(full, "/usr/lib/rabbitmq/bin/"+script)
	return exec.Command("chroot", append(full, args...)...)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func jailFromEnv() *jail {
	root := os.Getenv("RABBITMQ_CHROOT")
	if root == "" {
		return nil
	}
	return &jail{root: strings.TrimRight(root, "/"), uid: envOr("RABBITMQ_CHROOT_UID", "64990")}
}

// Start starts n nodes, joins them into one cluster and returns it. On an
// error every node it started is stopped again. ports picks free ports.
func Start(n int, ports func() (int, error)) (c *Cluster, err error) {
	j := jailFromEnv()
	tmp := ""
	if j == nil {
		if _, err := exec.LookPath("rabbitmq-server"); err != nil {
			return nil, fmt.Errorf("rabbitmq-server is not installed (apt-get install rabbitmq-server)")
		}
	} else {
		tmp = filepath.Join(j.root, "tmp")
	}
	dir, err := os.MkdirTemp(tmp, "ot-cluster-")
	if err != nil {
		return nil, err
	}
	c = &Cluster{dir: dir}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	tag := strconv.FormatInt(time.Now().UnixNano()%0xffffff, 16)
	for i := range n {
		port, err := ports()
		if err != nil {
			return c, err
		}
		dist, err := ports()
		if err != nil {
			return c, err
		}
		nd := &Node{Name: fmt.Sprintf("otc%d-%s@localhost", i, tag), Port: port, dir: filepath.Join(dir, strconv.Itoa(i)), jail: j}
		in := j.inside(nd.dir)
		nd.URL = fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", port)
		for _, d := range []string{"mnesia", "log"} {
			if err := os.MkdirAll(filepath.Join(nd.dir, d), 0o755); err != nil {
				return c, err
			}
		}
		conf := fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\nloopback_users = none\n", port)
		if err := os.WriteFile(filepath.Join(nd.dir, "rabbitmq.conf"), []byte(conf), 0o644); err != nil {
			return c, err
		}
		if err := os.WriteFile(filepath.Join(nd.dir, "enabled_plugins"), []byte("[].\n"), 0o644); err != nil {
			return c, err
		}
		nd.env = []string{
			"RABBITMQ_NODENAME=" + nd.Name,
			fmt.Sprintf("RABBITMQ_DIST_PORT=%d", dist),
			"RABBITMQ_MNESIA_BASE=" + filepath.Join(in, "mnesia"),
			"RABBITMQ_LOG_BASE=" + filepath.Join(in, "log"),
			"RABBITMQ_PID_FILE=" + filepath.Join(in, "pid"),
			"RABBITMQ_CONFIG_FILE=" + filepath.Join(in, "rabbitmq.conf"),
			"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(in, "enabled_plugins"),
		}
		if j == nil {
			nd.env = append(os.Environ(), nd.env...)
		}
		c.Nodes = append(c.Nodes, nd)
	}
	owner := "rabbitmq:rabbitmq"
	if j != nil {
		owner = j.uid + ":" + j.uid
	}
	if out, err := exec.Command("chown", "-R", owner, dir).CombinedOutput(); err != nil {
		return c, fmt.Errorf("chown %s: %v %s", dir, err, out)
	}
	for _, nd := range c.Nodes {
		if j == nil {
			if out, err := j.command(nd.env, "rabbitmq-server", "-detached").CombinedOutput(); err != nil {
				return c, fmt.Errorf("start %s: %v\n%s", nd.Name, err, out)
			}
			continue
		}
		// In the chroot: in the background, in a session of its own, its
		// output to a file (the package's rabbitmq-server runs in the
		// foreground).
		out, err := os.Create(filepath.Join(nd.dir, "log", "stdout.log"))
		if err != nil {
			return c, err
		}
		cmd := j.command(nd.env, "rabbitmq-server")
		cmd.Stdout, cmd.Stderr, cmd.SysProcAttr = out, out, &syscall.SysProcAttr{Setsid: true}
		err = cmd.Start()
		out.Close()
		if err != nil {
			return c, fmt.Errorf("start %s: %v", nd.Name, err)
		}
		go func() { _ = cmd.Wait() }()
	}
	for i, nd := range c.Nodes {
		if err := nd.awaitStartup(2 * time.Minute); err != nil {
			return c, fmt.Errorf("%s did not start: %v (log: %s)", nd.Name, err, nd.log())
		}
		if i == 0 {
			continue
		}
		for _, args := range [][]string{{"stop_app"}, {"join_cluster", c.Nodes[0].Name}, {"start_app"}} {
			if out, err := nd.ctl(time.Minute, args...); err != nil {
				return c, fmt.Errorf("%s %v: %v\n%s", nd.Name, args, err, out)
			}
		}
	}
	return c, nil
}

// URLs is every node's URL, comma-separated, as AMQP_URL takes them.
func (c *Cluster) URLs() string {
	var us []string
	for _, nd := range c.Nodes {
		us = append(us, nd.URL)
	}
	return strings.Join(us, ",")
}

// Ctl runs rabbitmqctl against any node that answers.
func (c *Cluster) Ctl(args ...string) (string, error) {
	var last error
	for _, nd := range c.Nodes {
		out, err := nd.ctl(30*time.Second, args...)
		if err == nil {
			return out, nil
		}
		last = fmt.Errorf("%v: %s", err, out)
	}
	return "", last
}

// Node returns the node named name.
func (c *Cluster) Node(name string) *Node {
	for _, nd := range c.Nodes {
		if nd.Name == name {
			return nd
		}
	}
	return nil
}

// Leader is the node that leads quorum queue q.
func (c *Cluster) Leader(q string) (*Node, error) {
	out, err := c.Ctl("-q", "list_queues", "name", "leader", "--no-table-headers")
	if err != nil {
		return nil, err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == q {
			if nd := c.Node(f[1]); nd != nil {
				return nd, nil
			}
			return nil, fmt.Errorf("queue %s led by %s, not a node of this cluster", q, f[1])
		}
	}
	return nil, fmt.Errorf("no queue %s in:\n%s", q, out)
}

func (nd *Node) ctl(within time.Duration, args ...string) (string, error) {
	out, err := nd.jail.command(nd.env, "rabbitmqctl", append([]string{"-n", nd.Name, "--timeout", strconv.Itoa(int(within / time.Second))}, args...)...).CombinedOutput()
	return string(out), err
}

// awaitStartup waits until the node is up: await_startup fails at once
// while the node has not registered with epmd yet, so it is retried.
func (nd *Node) awaitStartup(within time.Duration) error {
	end := time.Now().Add(within)
	for {
		out, err := nd.ctl(30*time.Second, "await_startup")
		if err == nil {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("%v: %s", err, out)
		}
		time.Sleep(time.Second)
	}
}

// log is the tail of the node's log, for a failure message.
func (nd *Node) log() string {
	b, _ := os.ReadFile(filepath.Join(nd.dir, "log", nd.Name+".log"))
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// PIDFile is where the node's Erlang VM writes its pid.
func (nd *Node) PIDFile() string { return filepath.Join(nd.dir, "pid") }

func (nd *Node) pid() int {
	b, err := os.ReadFile(filepath.Join(nd.dir, "pid"))
	if err != nil {
		return 0
	}
	p, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return p
}

// Kill kills the node's Erlang VM with SIGKILL, as a machine that dies.
func (nd *Node) Kill() error {
	p := nd.pid()
	if p <= 0 {
		return fmt.Errorf("%s: no pid", nd.Name)
	}
	return syscall.Kill(p, syscall.SIGKILL)
}

// Stop stops every node (SIGKILL for one that does not stop within 30 s)
// and removes the cluster's files.
func (c *Cluster) Stop() {
	for _, nd := range c.Nodes {
		p := nd.pid()
		if _, err := nd.ctl(30*time.Second, "stop"); err != nil && p > 0 {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
		for i := 0; p > 0 && i < 100 && syscall.Kill(p, 0) == nil; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	_ = os.RemoveAll(c.dir)
}
