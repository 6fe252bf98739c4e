package controller

// The controller actor defines no messages of its own: it takes
// raftactor.Tick from the shared ticker and raftactor.Proposed from the
// controller group, and sends raftactor.Propose. What it proposes are
// Commands (commands.go), which travel as raft entries, not actor messages.
