package command

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestVersionInfo(t *testing.T) {
	vcs := &debug.BuildInfo{GoVersion: "go1.26.8", Settings: []debug.BuildSetting{
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: "5cf6fce0123456789abcdef0123456789abcdef0"},
		{Key: "vcs.modified", Value: "true"},
	}}
	clean := &debug.BuildInfo{GoVersion: "go1.26.8", Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "5cf6fce0123456789abcdef0123456789abcdef0"}, {Key: "vcs.modified", Value: "false"}}}
	for _, c := range []struct {
		name, version, commit string
		bi                    *debug.BuildInfo
		want                  buildInfo
	}{
		{"-X wins", "v1.2.3", "abc1234", vcs, buildInfo{"v1.2.3", "abc1234", "go1.26.8"}},
		{"vcs, modified", "dev", "", vcs, buildInfo{"dev", "5cf6fce01234-modified", "go1.26.8"}},
		{"vcs", "dev", "", clean, buildInfo{"dev", "5cf6fce01234", "go1.26.8"}},
		{"nothing", "dev", "", &debug.BuildInfo{}, buildInfo{"dev", "unknown", runtime.Version()}},
		{"no build info", "dev", "", nil, buildInfo{"dev", "unknown", runtime.Version()}},
	} {
		if got := readBuildInfo(c.version, c.commit, c.bi); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}
