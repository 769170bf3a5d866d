package e2e

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func TestVersionCommand(t *testing.T) {
	var out, errb strings.Builder
	if code := run([]string{"paddock", "version"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	want := fmt.Sprintf("go: %s %s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if len(lines) != 3 || lines[0] != "paddock "+version || !strings.HasPrefix(lines[1], "commit: ") || lines[2] != want {
		t.Fatalf("paddock version:\n%s\nwant paddock %s, commit: ..., %s", out.String(), version, want)
	}
}

// The README's release build: the -X values show in `paddock version`,
// and the binary is static (no ELF interpreter, no shared libraries). A
// -buildvcs build of this checkout names its revision instead.
func TestVersionReleaseBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	dir := t.TempDir()
	release, vcs := filepath.Join(dir, "paddock-release"), filepath.Join(dir, "paddock-vcs")
	rev, gitErr := exec.Command("git", "rev-parse", "HEAD").Output()
	builds := [][]string{{"build", "-trimpath", "-ldflags", "-s -w -X main.version=v9.8.7 -X main.commit=abc1234", "-o", release, repoRoot}}
	if gitErr == nil {
		builds = append(builds, []string{"build", "-buildvcs=true", "-o", vcs, repoRoot})
	}
	var wg sync.WaitGroup
	errs := make([]error, len(builds))
	for i, args := range builds {
		wg.Go(func() {
			cmd := exec.Command("go", args...)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if msg, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, msg)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	out, err := exec.Command(release, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("paddock v9.8.7\ncommit: abc1234\ngo: %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if string(out) != want {
		t.Fatalf("release build: paddock version:\n%s\nwant:\n%s", out, want)
	}
	f, err := elf.Open(release)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Fatalf("release build is dynamic: it has a %v program header", p.Type)
		}
	}

	if gitErr != nil {
		t.Logf("no git checkout (%v): the -buildvcs case is skipped", gitErr)
		return
	}
	out, err = exec.Command(vcs, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	commit := statusField(string(out), "commit")
	if len(commit) < 12 || commit[:12] != strings.TrimSpace(string(rev))[:12] {
		t.Fatalf("-buildvcs build: commit %q, want the checkout's %s:\n%s", commit, rev, out)
	}
}
