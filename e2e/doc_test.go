// Package e2e holds paddock's end-to-end tests: each starts the real
// binary (this test binary, run as paddock through testscript, or one
// built from the module root for upgrades), sends real HTTP, signals,
// config edits and ctl commands, and asserts what a user would see.
// Tests clean up every process they start, by pid; traffic goes to
// loopback and unix sockets only.
package e2e
