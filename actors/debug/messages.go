package debug

// The debug actor takes no messages of its own; see doc.go.
