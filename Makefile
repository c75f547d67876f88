# The two commands a newcomer needs: `make run` and `make test`.
GO ?= go
PKGS ?= ./...

.PHONY: test test-rabbitmq43 test-rabbitmq44 check bench run build demo load smoke chaos

## test: gofmt/vet/tidy checks, then every test with the race detector against
## the real Firestore emulator (started by the tests when FIRESTORE_EMULATOR_HOST
## is unset) and the real RabbitMQ at AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/).
## The broker-outage tests stop RabbitMQ's app, and the node-loss tests run a cluster of their own: both run alone afterwards.
## Then the broker, relay and stack suites, outage and node-loss included, again on RabbitMQ 4.3 (test-rabbitmq43).
OUTAGE_PKGS = ./shared/relay/ ./local/stack/ ./local/cmd/run/
test: check
	$(GO) test -race -count=1 -timeout 30m $(PKGS)
	$(GO) test -race -count=1 -timeout 10m -p 1 -tags outage -run 'Outage|NodeLoss' $(OUTAGE_PKGS)
	$(MAKE) test-rabbitmq43
	@if [ -n "$(RABBITMQ44_URL)" ]; then $(MAKE) test-rabbitmq44; else \
	  echo "native-mode tests (BROKER_MODE=native, RabbitMQ 4.4+): NOT RUN - no 4.4 node given (RABBITMQ44_URL; see docs/operating.md#rabbitmq-lines)"; fi

## test-rabbitmq43: the broker-facing suites against RabbitMQ 4.3 (production's line): a node of Debian forky's
## rabbitmq-server in a chroot beside the machine's own (local/rabbitmq43/rabbitmq43.sh installs it once, ~1–4 min),
## its rabbitmqctl for the outage tests, node-loss clusters inside the same chroot.
RABBIT43 = $(CURDIR)/local/rabbitmq43/rabbitmq43.sh
test-rabbitmq43:
	@url=$$($(RABBIT43) start) && echo "RabbitMQ $$($(RABBIT43) status) at $$url" && \
	  AMQP_URL=$$url $(GO) test -race -count=1 -timeout 20m ./shared/broker/ ./shared/relay/ ./local/stack/ && \
	  AMQP_URL=$$url RABBITMQCTL="$(RABBIT43) ctl" RABBITMQ_CHROOT=$${OT_RABBIT43_ROOT:-/var/cache/ordertimeout/rabbitmq-4.3} \
	    $(GO) test -race -count=1 -timeout 15m -p 1 -tags outage -run 'Outage|NodeLoss' $(OUTAGE_PKGS)

## test-rabbitmq44: the native-mode tests and the broker-facing suites against a RabbitMQ 4.4+ node you give
## (no 4.4 package exists to install, so CI cannot): make test-rabbitmq44 RABBITMQ44_URL=amqp://guest:guest@127.0.0.1:5674/
test-rabbitmq44:
	@test -n "$(RABBITMQ44_URL)" || { echo "RABBITMQ44_URL is not set: give the AMQP URL of a RabbitMQ 4.4+ node"; exit 2; }
	AMQP_URL=$(RABBITMQ44_URL) RABBITMQ44_URL=$(RABBITMQ44_URL) $(GO) test -race -count=1 -timeout 20m ./shared/broker/ ./shared/relay/ ./local/stack/

## check: formatting (Go and terraform), vet and module tidiness leave no diff.
check:
	@command -v terraform >/dev/null || { echo "terraform is not installed (needed for terraform fmt -check)"; exit 1; }
	terraform fmt -check -recursive terraform
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) vet -tags outage,crashaftercommit $(PKGS)
	@cp go.mod /tmp/.go.mod.bak && cp go.sum /tmp/.go.sum.bak && $(GO) mod tidy && \
	  if ! cmp -s go.mod /tmp/.go.mod.bak || ! cmp -s go.sum /tmp/.go.sum.bak; then \
	    echo "go mod tidy changed go.mod/go.sum"; cp /tmp/.go.mod.bak go.mod; cp /tmp/.go.sum.bak go.sum; exit 1; fi

build:
	$(GO) build $(PKGS)

## bench: the benchmarks named in the README.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x $(PKGS)

## run: the whole system locally (see README).
run:
	$(GO) build -o .run/bin/run ./local/cmd/run
	exec .run/bin/run

## demo: a visible scenario against the running `make run` (paid, lost announcement, timed out, cancelled).
demo:
	$(GO) run ./local/cmd/demo

## load: load the running `make run`; ORDERS, RATE, PAY, CANCEL, ITEMS, SHARDS, LIMIT (each item's maxPerShopper) override the defaults.
## It ends with the work one order does down each path (COST_ORDERS orders per path; 0 skips it).
ORDERS ?= 2000
COST_ORDERS ?= 20
RATE ?= 100
PAY ?= 0.5
CANCEL ?= 0
ITEMS ?= 100
SHARDS ?= 1
LIMIT ?= 0
load:
	$(GO) run ./local/cmd/load -orders $(ORDERS) -rate $(RATE) -pay $(PAY) -cancel $(CANCEL) -items $(ITEMS) -shards $(SHARDS) -max-per-shopper $(LIMIT) -cost-orders $(COST_ORDERS)

## smoke: from outside, as a shopper: an unpaid order cancelled at its deadline, stock back, a shopper cancel.
## Against `make run` by default; against a deployment: make smoke SMOKE_ARGS='-createorder URL -deductstock URL -token TOKEN'
smoke:
	$(GO) run ./local/cmd/smoke $(SMOKE_ARGS)

## chaos: load the running `make run` while faults are injected (relay and a function killed, RabbitMQ
## stopped ~10 s, the relay frozen ~20 s), then the invariant check and a timeline with the faults marked.
FAULTS ?= 4
chaos:
	$(GO) run ./local/cmd/load -orders $(ORDERS) -rate $(RATE) -pay $(PAY) -cancel $(CANCEL) -chaos -faults $(FAULTS)
