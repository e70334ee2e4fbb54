package charttest

import (
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestDockerfileBuildStep runs the build step of deploy/Dockerfile (its RUN
// instruction, as the build stage would) for every service with a command
// and for the retain command, without Docker: the binaries must be static,
// built without cgo, with the time zone database embedded and the version
// stamped. What Docker itself adds (base image, user, labels) is checked by
// reading the Dockerfile.
func TestDockerfileBuildStep(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries")
	}
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := string(b)
	for _, want := range []string{
		"FROM gcr.io/distroless/static-debian12:nonroot",
		"USER 65532:65532",
		`ENTRYPOINT ["/app"]`,
		"org.opencontainers.image.version=",
		"org.opencontainers.image.revision=",
		"org.opencontainers.image.source=",
	} {
		if !strings.Contains(dockerfile, want) {
			t.Errorf("deploy/Dockerfile has no %q", want)
		}
	}

	// The RUN instruction of the build stage, continuation lines joined,
	// without its BuildKit flags.
	joined := strings.ReplaceAll(dockerfile, "\\\n", " ")
	m := regexp.MustCompile(`(?m)^RUN (.*)$`).FindStringSubmatch(joined)
	if m == nil {
		t.Fatal("no RUN instruction in deploy/Dockerfile")
	}
	script := regexp.MustCompile(`--mount=\S+\s*`).ReplaceAllString(m[1], "")

	services := []string{"retain"}
	dirs, _ := filepath.Glob("../../services/*/cmd/*")
	for _, d := range dirs {
		services = append(services, filepath.Base(d))
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	for _, svc := range services {
		t.Run(svc, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "app")
			cmd := exec.Command("sh", "-c", strings.ReplaceAll(script, "/out/app", out))
			cmd.Dir = repo // WORKDIR /src after COPY . .
			cmd.Env = append(os.Environ(), "SERVICE="+svc, "VERSION=v9.9.9-test", "TARGETOS=linux", "TARGETARCH="+goarch())
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("build step for SERVICE=%s: %v\n%s", svc, err, b)
			}
			f, err := elf.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Error("the binary is dynamically linked; it would not run on distroless/static")
				}
			}
			info, err := buildinfo.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			settings := map[string]string{}
			for _, s := range info.Settings {
				settings[s.Key] = s.Value
			}
			if settings["CGO_ENABLED"] != "0" {
				t.Errorf("CGO_ENABLED = %q, want 0", settings["CGO_ENABLED"])
			}
			if !slices.Contains(strings.Split(settings["-tags"], ","), "timetzdata") {
				t.Errorf("built with tags %q: the time zone database is not embedded", settings["-tags"])
			}
			// -trimpath keeps -ldflags out of the build info: look for the
			// stamped version in the binary itself.
			bin, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(bin, []byte("v9.9.9-test")) {
				t.Error("the version is not stamped into main.version")
			}
		})
	}
	if bad := exec.Command("sh", "-c", script); true {
		bad.Dir = repo
		bad.Env = append(os.Environ(), "SERVICE=nosuch", "VERSION=x", "TARGETOS=linux", "TARGETARCH="+goarch())
		if b, err := bad.CombinedOutput(); err == nil || !strings.Contains(string(b), "SERVICE=nosuch: no command") {
			t.Errorf("an unknown SERVICE is not refused clearly: %v\n%s", err, b)
		}
	}
}

func goarch() string {
	out, err := exec.Command("go", "env", "GOARCH").Output()
	if err != nil {
		return "amd64"
	}
	return strings.TrimSpace(string(out))
}
