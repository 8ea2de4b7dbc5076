package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pochta/pochta/internal/pgtest"
)

// runPostgres measures pochta on PostgreSQL as run measured it on bbolt, on
// a throwaway cluster on loopback (internal/pgtest) left durable (fsync and
// synchronous_commit on: a 250 waits for the commit on disk, as on bbolt):
// one node on a database of its own, then two nodes sharing another (SMTP
// clients taking turns between them, FETCH through the second, IDLE on the
// second woken by deliveries through the first). Then it prints every
// figure beside bbolt's with the ratio. The daemons and the cluster stop
// at the end, also on an error (atExit).
func runPostgres(bin string, perLevel, fetchN, idle int, limit time.Duration, bolt figures) error {
	c, err := pgtest.Start(pgtest.Options{Durable: true})
	if err != nil {
		return fmt.Errorf("starting PostgreSQL: %w", err)
	}
	var once sync.Once
	stopCluster := func() {
		once.Do(func() {
			if err := c.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, "loadgen: stopping PostgreSQL:", err)
			}
		})
	}
	atExit.add(stopCluster)
	defer stopCluster()
	pid, err := c.ServerPID()
	if err != nil {
		return err
	}
	fmt.Printf("\n== PostgreSQL %s on 127.0.0.1 (same machine), fsync %s, synchronous_commit %s\n",
		setting(c, "server_version"), setting(c, "fsync"), setting(c, "synchronous_commit"))

	var runs [2]figures
	for i, count := range []int{1, 2} {
		fmt.Printf("\n== PostgreSQL, %d node(s) on one database\n", count)
		nodes, err := startPGNodes(bin, c, fmt.Sprintf("bench%d", count), count, idle)
		if err != nil {
			return err
		}
		runs[i], err = measure(nodes, pid, perLevel, fetchN, idle, limit)
		for _, d := range nodes {
			d.stop()
		}
		if err != nil {
			return fmt.Errorf("PostgreSQL, %d node(s): %w", count, err)
		}
	}
	printComparison(bolt, runs[0], runs[1])
	return nil
}

// setting is a run-time setting of the cluster (SHOW name), or why it
// could not be read.
func setting(c *pgtest.Cluster, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, c.DSN("postgres"))
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SHOW "+name).Scan(&v); err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return v
}

// startPGNodes creates database db on c and starts count daemons on it,
// named bench-1, bench-2, …, each with a data directory of its own (the
// control socket and certificates); the first adds the bench users.
func startPGNodes(bin string, c *pgtest.Cluster, db string, count, idle int) ([]*daemon, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url, err := c.CreateDatabase(ctx, db)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pochta-bench-pg-")
	if err != nil {
		return nil, err
	}
	atExit.add(func() { os.RemoveAll(dir) })
	var nodes []*daemon
	for i := range count {
		nodeDir := filepath.Join(dir, fmt.Sprintf("node%d", i+1))
		if err := os.Mkdir(nodeDir, 0o700); err != nil {
			return nil, err
		}
		d, err := startNode(bin, nodeDir, node{idle: idle, database: url, name: fmt.Sprintf("bench-%d", i+1), usersExist: i > 0})
		if err != nil {
			for _, n := range nodes {
				n.stop()
			}
			return nil, fmt.Errorf("node %d on PostgreSQL: %w", i+1, err)
		}
		nodes = append(nodes, d)
	}
	return nodes, nil
}

// printComparison prints the PostgreSQL runs' figures beside bbolt's, each
// with its ratio to bbolt's (PostgreSQL ÷ bbolt).
func printComparison(bolt, one, two figures) {
	fmt.Println("\nPostgreSQL beside bbolt, this run (ratio = PostgreSQL ÷ bbolt: for msgs/s above 1 is faster, for times above 1 is slower):")
	fmt.Printf("%-38s %10s %12s %7s %12s %7s\n", "measure", "bbolt", "PG 1 node", "ratio", "PG 2 nodes", "ratio")
	row := func(name string, b, o, t float64, unit string) {
		ratio := func(x float64) string {
			if b == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f", x/b)
		}
		format := func(x float64) string {
			if unit == "ms" {
				return fmt.Sprintf("%.2f ms", x)
			}
			return fmt.Sprintf("%.0f", x)
		}
		fmt.Printf("%-38s %10s %12s %7s %12s %7s\n", name, format(b), format(o), ratio(o), format(t), ratio(t))
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for i := 0; i < len(bolt.intake) && i < len(one.intake) && i < len(two.intake); i++ {
		row(fmt.Sprintf("SMTP msgs/s, %s client(s)", bolt.intake[i].label()), bolt.intake[i].rate, one.intake[i].rate, two.intake[i].rate, "")
		row(fmt.Sprintf("SMTP p99, %s client(s)", bolt.intake[i].label()), ms(bolt.intake[i].p99), ms(one.intake[i].p99), ms(two.intake[i].p99), "ms")
	}
	if i := len(bolt.intake) - 1; i >= 0 && i < len(one.intake) && i < len(two.intake) {
		total := func(in intake) float64 { return ms(in.cpuDaemons + in.cpuDB) }
		row(fmt.Sprintf("CPU per message, %s (pochta + PG)", bolt.intake[i].label()), total(bolt.intake[i]), total(one.intake[i]), total(two.intake[i]), "ms")
	}
	row(fmt.Sprintf("FETCH ENVELOPE FLAGS UID, %d (median)", bolt.fetched), ms(bolt.envelopes), ms(one.envelopes), ms(two.envelopes), "ms")
	row(fmt.Sprintf("FETCH BODY.PEEK[], %d (median)", bolt.fetched), ms(bolt.bodies), ms(one.bodies), ms(two.bodies), "ms")
	row("IDLE wake p50 (2 nodes: across)", ms(bolt.idleP50), ms(one.idleP50), ms(two.idleP50), "ms")
	row("IDLE wake max (2 nodes: across)", ms(bolt.idleMax), ms(one.idleMax), ms(two.idleMax), "ms")
}
