package pgstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pochta/pochta/storage"
)

// leaderLockKey is the session advisory lock key for housekeeping leadership.
const leaderLockKey = 0x706f6368_7461_0002

// LeaderAppName is the application_name of a Leader's connection.
const LeaderAppName = "pochta-leader"

// Leader is this node's housekeeping leadership: a session-level advisory
// lock held by a connection of its own (not one of the pool's). At most one
// session in the cluster holds it; it is given up when Close is called or
// the connection ends for any reason (the node dies, the network fails, the
// backend is terminated), and the server then grants it to a waiting node.
// A leader must check Alive before each round of housekeeping.
type Leader struct {
	mu   sync.Mutex
	conn *pgx.Conn
	pid  uint32 // the backend holding the lock
}

func leaderConn(ctx context.Context, pool *pgxpool.Pool) (*pgx.Conn, error) {
	cfg := pool.Config().ConnConfig.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = LeaderAppName
	// The lock lasts as long as the server thinks this session lives: a
	// node whose machine lost power is noticed within about a minute
	// (30 s idle, then 3 probes 10 s apart), not the kernel's two hours.
	// TCP only; ignored over a Unix socket.
	cfg.RuntimeParams["tcp_keepalives_idle"] = "30"
	cfg.RuntimeParams["tcp_keepalives_interval"] = "10"
	cfg.RuntimeParams["tcp_keepalives_count"] = "3"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: leader: connecting: %w", err)
	}
	return conn, nil
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn.Close(ctx)
}

// TryLead tries once to become leader. It returns nil, nil when another
// session leads.
func TryLead(ctx context.Context, pool *pgxpool.Pool) (*Leader, error) {
	return tryLead(ctx, pool, leaderLockKey)
}

func tryLead(ctx context.Context, pool *pgxpool.Pool, key int64) (*Leader, error) {
	conn, err := leaderConn(ctx, pool)
	if err != nil {
		return nil, err
	}
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", key).Scan(&ok); err != nil {
		closeConn(conn)
		return nil, fmt.Errorf("pgstore: leader: trying lock: %w", err)
	}
	if !ok {
		closeConn(conn)
		return nil, nil
	}
	return &Leader{conn: conn, pid: conn.PgConn().PID()}, nil
}

// Lead waits until this node is leader or ctx ends. The wait is the
// server's (pg_advisory_lock): the lock is granted as soon as the previous
// leader's session ends, with no polling.
func Lead(ctx context.Context, pool *pgxpool.Pool) (*Leader, error) {
	conn, err := leaderConn(ctx, pool)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(leaderLockKey)); err != nil {
		// Closing the session also withdraws the wait, or releases a lock
		// granted just as ctx ended.
		closeConn(conn)
		return nil, fmt.Errorf("pgstore: leader: waiting for lock: %w", err)
	}
	return &Leader{conn: conn, pid: conn.PgConn().PID()}, nil
}

// Alive reports whether leadership still holds: the session holding the
// lock answers. After false, the lock may already be someone else's; Close
// and Lead again.
func (l *Leader) Alive(ctx context.Context) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil || l.conn.IsClosed() {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return l.conn.Ping(ctx) == nil
}

// Close gives up leadership by ending the session. It is safe to call more
// than once.
func (l *Leader) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		closeConn(l.conn)
		l.conn = nil
	}
}

// leaderRetry is the shortest pause between two tries of a node that does
// not lead: each try opens a connection, and housekeeping rounds come every
// few seconds at most.
const leaderRetry = 5 * time.Second

// jobLockKeys are the advisory lock keys of the housekeeping jobs, one
// leader each.
var jobLockKeys = map[string]int64{
	storage.JobExpiry:     leaderLockKey + 1,
	storage.JobRetention:  leaderLockKey + 2,
	storage.JobTombstones: leaderLockKey + 3,
}

// leadership is a store's side of Leading: per job, the Leader it holds,
// or when it tried last.
type leadership struct {
	mu    sync.Mutex
	jobs  map[string]*jobLead
	retry time.Duration // leaderRetry; tests shorten it
}

type jobLead struct {
	leader  *Leader
	lastTry time.Time
}

// Leading implements storage.Leadership: true while this store holds job's
// lock, trying to take it when it does not (at most every leaderRetry).
// Leadership lost (the lock's connection ended) is logged and tried for
// again at once. A store opened without Options.Housekeeping never leads.
func (s *pgStore) Leading(ctx context.Context, job string) bool {
	key, ok := jobLockKeys[job]
	if !ok || !s.opts.Housekeeping {
		return false
	}
	l := &s.lead
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.closed.Load() {
		return false
	}
	if l.jobs == nil {
		l.jobs = map[string]*jobLead{}
	}
	j := l.jobs[job]
	if j == nil {
		j = &jobLead{}
		l.jobs[job] = j
	}
	if j.leader != nil {
		if j.leader.Alive(ctx) {
			return true
		}
		j.leader.Close()
		j.leader = nil
		j.lastTry = time.Time{}
		s.log.Warn("pgstore: this node lost a housekeeping lock (its connection ended); trying again", "job", job)
	}
	if !j.lastTry.IsZero() && time.Since(j.lastTry) < l.retry {
		return false
	}
	j.lastTry = time.Now()
	leader, err := tryLead(ctx, s.pool, key)
	if err != nil {
		s.log.Warn("pgstore: trying for a housekeeping lock", "job", job, "err", err)
		return false
	}
	if leader == nil {
		return false
	}
	j.leader = leader
	s.log.Info("pgstore: this node now runs a job of the cluster's housekeeping", "job", job)
	return true
}

// stopLeading gives up every lock held.
func (s *pgStore) stopLeading() {
	s.lead.mu.Lock()
	defer s.lead.mu.Unlock()
	for _, j := range s.lead.jobs {
		if j.leader != nil {
			j.leader.Close()
			j.leader = nil
		}
	}
}
