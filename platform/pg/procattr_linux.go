package pg

import "syscall"

func serverProcAttr(owner *osUser) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{
		// Own process group: a terminal Ctrl-C goes to the services, which
		// then drain while the database is still up.
		Setpgid: true,
		// Fast shutdown if this process dies without Stop: no orphaned
		// servers after a crashed or killed test binary.
		Pdeathsig: syscall.SIGINT,
	}
	if owner != nil {
		a.Credential = owner.credential()
	}
	return a
}
