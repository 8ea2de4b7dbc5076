package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on
// every Linux this runs on).
const clockTick = 10 * time.Millisecond

// procStat is the fields of /proc/pid/stat after the command name: [0]
// state, [1] ppid, [11] utime, [12] stime, [13] cutime, [14] cstime.
func procStat(pid int) []string {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(data[i+1:]))
}

func ticks(fields []string, idx ...int) time.Duration {
	var n int
	for _, i := range idx {
		if i < len(fields) {
			v, _ := strconv.Atoi(fields[i])
			n += v
		}
	}
	return time.Duration(n) * clockTick
}

// processCPU is the CPU time (user + system) process pid has used; 0 when
// it cannot be read.
func processCPU(pid int) time.Duration { return ticks(procStat(pid), 11, 12) }

// serverCPU is the CPU time a server process tree has used: the parent's
// own and that of its children it has reaped (cutime, cstime: a
// postmaster's ended backends), plus its live children's (the backends
// and background workers still running).
func serverCPU(pid int) time.Duration {
	total := ticks(procStat(pid), 11, 12, 13, 14)
	entries, _ := os.ReadDir("/proc")
	parent := strconv.Itoa(pid)
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := procStat(child); len(f) > 1 && f[1] == parent {
			total += ticks(f, 11, 12, 13, 14)
		}
	}
	return total
}
