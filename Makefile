# Flotilla: a Kafka-wire-compatible broker where every partition is a Raft group.
GO       ?= go
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
CLUSTER_DIR := data/cluster

.PHONY: build run cluster cluster-stop test test-short bench lint fuzz clean

## build: compile bin/flotilla
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/flotilla ./cmd/flotilla

## run: one broker from configs/single.yaml (Kafka 9092, Raft 9192, debug 9292)
run: build
	bin/flotilla --config configs/single.yaml

## cluster: three local brokers from configs/cluster/, data and logs under data/cluster
cluster: build
	@mkdir -p $(CLUSTER_DIR)
	@for n in 1 2 3; do \
		if [ -f $(CLUSTER_DIR)/node$$n.pid ] && ps -o stat= -p $$(cat $(CLUSTER_DIR)/node$$n.pid) 2>/dev/null | grep -qv Z; then \
			echo "node$$n already running (pid $$(cat $(CLUSTER_DIR)/node$$n.pid))"; continue; fi; \
		nohup bin/flotilla --config configs/cluster/node$$n.yaml >>$(CLUSTER_DIR)/node$$n.log 2>&1 & \
		echo $$! >$(CLUSTER_DIR)/node$$n.pid; \
		echo "node$$n started (pid $$!, log $(CLUSTER_DIR)/node$$n.log, debug http://127.0.0.1:929$$((n+1)))"; \
	done

## cluster-stop: stop the brokers started by `make cluster` (SIGTERM; waits up to 30 s for them to exit)
cluster-stop:
	@running=""; \
	for n in 1 2 3 4; do \
		f=$(CLUSTER_DIR)/node$$n.pid; [ -f $$f ] || continue; \
		pid=$$(cat $$f); \
		if kill $$pid 2>/dev/null; then echo "node$$n stopping (pid $$pid)"; running="$$running $$n:$$pid"; else rm -f $$f; fi; \
	done; \
	for i in $$(seq 300); do \
		left=""; \
		for np in $$running; do \
			if ps -o stat= -p $${np#*:} 2>/dev/null | grep -qv Z; then left="$$left $$np"; \
			else rm -f $(CLUSTER_DIR)/node$${np%%:*}.pid; echo "node$${np%%:*} stopped"; fi; \
		done; \
		running=$$left; [ -z "$$running" ] && exit 0; sleep 0.1; \
	done; \
	for np in $$running; do echo "node$${np%%:*} still running after 30 s (pid $${np#*:}, pid file kept)"; done; \
	exit 1

## test: the whole suite (unit, in-process cluster, end-to-end with real processes)
test:
	$(GO) test -race -count=1 -timeout 15m ./...

## test-short: unit tests only
test-short:
	$(GO) test -count=1 -short ./...

## bench: benchmarks; results go to docs/BENCHMARKS.md by hand
bench: build
	$(GO) run ./cmd/flotilla-bench all

## lint: gofmt, go vet, staticcheck
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

## fuzz: run each fuzz target for a short while
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzReadFrame -fuzztime 30s ./netactor/
	$(GO) test -run '^$$' -fuzz FuzzRecover -fuzztime 30s ./actors/storage/
	$(GO) test -run '^$$' -fuzz FuzzParseBatch -fuzztime 30s ./actors/partition/
	$(GO) test -run '^$$' -fuzz FuzzValidateRecords -fuzztime 30s ./actors/partition/
	$(GO) test -run '^$$' -fuzz FuzzCheckCompressedCount -fuzztime 30s ./actors/partition/
	$(GO) test -run '^$$' -fuzz FuzzDecodeRequest -fuzztime 30s ./actors/kafka/

clean:
	rm -rf bin data
