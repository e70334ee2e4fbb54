//go:build unix && !linux

package pg

import "syscall"

func serverProcAttr(owner *osUser) *syscall.SysProcAttr {
	// Own process group: a terminal Ctrl-C goes to the services, which then
	// drain while the database is still up.
	a := &syscall.SysProcAttr{Setpgid: true}
	if owner != nil {
		a.Credential = owner.credential()
	}
	return a
}
