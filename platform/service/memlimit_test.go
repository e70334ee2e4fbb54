package service

import (
	"errors"
	"io/fs"
	"testing"
)

func TestContainerMemoryLimit(t *testing.T) {
	files := func(m map[string]string) func(string) ([]byte, error) {
		return func(name string) ([]byte, error) {
			if v, ok := m[name]; ok {
				return []byte(v), nil
			}
			return nil, fs.ErrNotExist
		}
	}
	for _, tc := range []struct {
		name  string
		read  func(string) ([]byte, error)
		want  int64
		wantO bool
	}{
		{"cgroup v2 limit", files(map[string]string{"/sys/fs/cgroup/memory.max": "536870912\n"}), 536870912, true},
		{"cgroup v2 unlimited", files(map[string]string{"/sys/fs/cgroup/memory.max": "max\n"}), 0, false},
		{"cgroup v1 limit", files(map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "1073741824\n"}), 1073741824, true},
		{"cgroup v1 unlimited", files(map[string]string{"/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"}), 0, false},
		{"no cgroup", files(nil), 0, false},
		{"unreadable", func(string) ([]byte, error) { return nil, errors.New("permission denied") }, 0, false},
		{"garbage", files(map[string]string{"/sys/fs/cgroup/memory.max": "lots"}), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := containerMemoryLimit(tc.read)
			if got != tc.want || ok != tc.wantO {
				t.Fatalf("containerMemoryLimit = %d, %v; want %d, %v", got, ok, tc.want, tc.wantO)
			}
		})
	}
}
