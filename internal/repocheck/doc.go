// Package repocheck holds tests that police the repository itself: every
// package has exactly one package doc comment, and nothing outside rbd/
// imports go-ceph (cgo stays at the edge).
package repocheck
