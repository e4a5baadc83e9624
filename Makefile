# Every target installs what it needs into .venv/ first; only Python 3.11+ and Node are assumed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

PORT ?= 8080
EMULATOR_PORT ?= 8081

CDK := node_modules/.bin/cdk
# The CDK CLI runs `python3 app.py` (cdk.json): put the project's virtual environment first.
CDK_ENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 \
	CDK_DISABLE_VERSION_CHECK=1
OUTPUTS ?= outputs.json

.PHONY: install lint test test-tools core-tools client-tools test-fast demo dev api-key synth preflight packing bootstrap deploy destroy smoke \
	refresh-catalog refresh-catalog-live fuzz load bench-parser bench-function bench-coldstart bench-limits clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt lambda/requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required, found " + sys.version.split()[0])'
	@echo "Installing Python dependencies into $(VENV)/ (first run: about a minute)" >&2
	@$(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt >&2
	@$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e . >&2
	@touch $@

# Tools whose many pins must not move the app's get environments of their own, .venv-<name>/ from
# requirements-<name>.txt: checkov, the sagemaker SDK (~300 MB, never in .venv or the Lambda bundle), and the
# frameworks the client suites drive (instructor, guidance).
CHECKOV_STAMP := .venv-checkov/.installed
SAGEMAKER_STAMP := .venv-sagemaker/.installed
FRAMEWORKS_STAMP := .venv-frameworks/.installed

.venv-%/.installed: requirements-%.txt
	@echo "Installing $< into .venv-$*/ (first run: about a minute)" >&2
	@$(PYTHON) -m venv .venv-$*
	@.venv-$*/bin/python -m pip install --quiet --disable-pip-version-check -r $< >&2
	@touch $@

BROWSER_STAMP := $(VENV)/.browser

# The browser test drives Debian's Chromium (no browser download); a CJK font renders the demo answer.
$(BROWSER_STAMP):
	@if ! command -v chromium >/dev/null || ! fc-list :lang=zh 2>/dev/null | grep -q .; then \
		if [ "$$(id -u)" != 0 ]; then \
			echo "The browser test needs Debian's chromium and fonts-wqy-zenhei packages: install them (apt-get) and rerun." >&2; \
			exit 1; \
		fi; \
		echo "Installing Debian's chromium and fonts-wqy-zenhei (apt-get)" >&2; \
		apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium fonts-wqy-zenhei >&2; \
	fi
	@touch $@

$(CDK): package.json
	@npm install --no-audit --no-fund --loglevel=error >&2
	@touch $@

# ruff (rules in pyproject.toml) and mypy (strict on the function, infra and client); `make test` runs it first.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

PYTEST := JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 $(PY) -m pytest

# The whole suite (the README's contract; CI runs it), in three tiers (docs/local-development.md, Tests),
# each installing what it drives: unit and integration on both cores, then the end-to-end tier one test at
# a time (its timings and its servers), lint running while their tools install; then the third-party client
# suites (marker `clients`), once theirs are installed.
test: install
	@$(MAKE) --no-print-directory -j4 lint core-tools
	$(PYTEST) -n 2 --dist loadfile -m "not clients" tests/unit tests/integration
	$(PYTEST) -m "not clients" tests/e2e
	@$(MAKE) --no-print-directory -j3 client-tools
	$(PYTEST) -m clients

# What the end-to-end tier drives besides .venv: the CDK CLI (with the openai npm package), checkov.
core-tools: $(CDK) $(CHECKOV_STAMP)
# What the client suites drive besides: the sagemaker SDK, instructor and guidance, Chromium.
client-tools: $(CDK) $(SAGEMAKER_STAMP) $(FRAMEWORKS_STAMP) $(BROWSER_STAMP)
test-tools: core-tools client-tools

# The edit loop: unit and integration tests but the slow ones (marker `slow`) and the client suites, with
# the small hypothesis profile, on four workers (the tests wait on sockets more than they compute); no lint,
# no end-to-end tier.
test-fast: install
	HYPOTHESIS_PROFILE=dev $(PYTEST) -q -n 4 --dist loadfile -m "not slow and not clients" tests/unit tests/integration

# API_KEY=<key>: the local function runs with api_key auth and accepts that one key (kept, with its limits and
# usage, in a DynamoDB API on loopback); LIMITS="max_streams=2 rpm=30": that key's limits.
# MODEL=<catalog id>: the function and the emulator run as that model (its settings and container formats);
# MODELS=<id>,<id>: several models behind the one URL, each an inference component, the request's model picking.
# SCALE_TO_ZERO=1: the model starts scaled to zero and wakes 15 s after the first request (or SCALE_TO_ZERO=<s>).
LOCAL_ARGS = $(if $(API_KEY),--api-key '$(API_KEY)') $(if $(LIMITS),--limits '$(LIMITS)') $(if $(MODEL),--model '$(MODEL)') $(if $(MODELS),--models '$(MODELS)') \
	$(if $(SCALE_TO_ZERO),--scale-to-zero $(if $(filter-out 1,$(SCALE_TO_ZERO)),$(SCALE_TO_ZERO)))

demo: install
	@$(PY) -m local_mode demo $(LOCAL_ARGS)

dev: install
	@$(PY) -m local_mode dev --port $(PORT) --emulator-port $(EMULATOR_PORT) $(LOCAL_ARGS)

# A deployment with auth=api_key: issue a key for consumer NAME (printed once); EXPIRES=90d or 12h.
api-key: install
	@test -n "$(NAME)" || { echo "usage: make api-key NAME=<consumer> [EXPIRES=90d]" >&2; exit 2; }
	@$(PY) -m stream_client keys --outputs $(OUTPUTS) create '$(NAME)' $(if $(EXPIRES),--expires '$(EXPIRES)')

synth: install $(CDK)
	AWS_EC2_METADATA_DISABLED=true $(CDK_ENV) $(CDK) synth --quiet $(CDK_ARGS)

# Read-only checks of the account and region the deployment goes to (same CDK_ARGS as deploy); deploy runs
# them first. SKIP_CHECKS="bootstrap sagemaker-quota" leaves checks out.
PREFLIGHT = $(CDK_ENV) $(PY) -m infra.preflight $(CDK_ARGS) $(foreach check,$(SKIP_CHECKS),--skip $(check))

preflight: install
	@$(PREFLIGHT)

# Which instance types can host MODELS=a,b together on one endpoint, and how many instances every model awake fills.
packing: install
	@$(PY) -m infra.packing $(MODELS)

bootstrap: install $(CDK)
	$(CDK_ENV) $(CDK) bootstrap $(CDK_ARGS)

# Interactive by default: deploy asks before widening IAM or security groups, destroy before deleting.
# APPROVE=1 answers yes to both, for CI and other runs without a terminal (the CLI refuses to ask there);
# only 1, true or yes does (APPROVE=0 still asks).
APPROVED = $(filter 1 true yes,$(APPROVE))
deploy: install $(CDK)
	@$(PREFLIGHT)
	$(CDK_ENV) $(CDK) deploy --all --require-approval $(if $(APPROVED),never,broadening) --outputs-file $(OUTPUTS) \
		$(CDK_ARGS)
	@# A deployment made before the key table keeps its keys: copy its key secret in (once; safe to repeat).
	@if grep -q '"ApiKeysSecretArn"' $(OUTPUTS) 2>/dev/null; then $(PY) -m stream_client keys --outputs $(OUTPUTS) migrate; fi

destroy: install $(CDK)
	$(CDK_ENV) $(CDK) destroy --all $(if $(APPROVED),--force) $(CDK_ARGS)

# After make deploy: health, refusal without credentials, a streamed answer (TTFT, tokens/s), a 4xx for bad
# input, through the deployed URL; one verdict line, non-zero exit on any failure.
smoke: install
	@$(PY) -m stream_client smoke --outputs $(OUTPUTS)

refresh-catalog: install
	$(PY) -m infra.refresh_catalog

# JumpStart's own resolution of every pin, by the sagemaker SDK (network; no credentials needed): reports
# newer versions and changes nothing. UPDATE=<model id> [TO=<version>] moves that one pin.
refresh-catalog-live: install $(SAGEMAKER_STAMP)
	$(PY) -m infra.refresh_catalog --live $(if $(REGION),--region $(REGION)) $(if $(UPDATE),--update $(UPDATE)) \
		$(if $(TO),--to $(TO))

# The full hypothesis counts, refusals' p99 within 100 ms, and /healthz answered within 100 ms while each
# hostile body or silent endpoint is in flight (tests/integration/test_event_loop.py).
fuzz: install
	HYPOTHESIS_PROFILE=full FUZZ_REFUSAL_P99_SECONDS=0.1 FUZZ_HEALTHZ_SECONDS=0.1 \
		JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION=20 \
		$(PY) -m pytest -q tests/integration/test_robustness.py tests/integration/test_hostile_requests.py \
		tests/unit/test_tokens.py tests/integration/test_event_loop.py \
		-k "fuzzed or openapi or random_chunkings or arbitrary or chaos or hostile or refusal_latency or event_loop"

load: install
	$(PY) benchmarks/function_latency.py --concurrency 50 200 --tokens 48

bench-function: install
	$(PY) benchmarks/function_latency.py

# Process start -> ready and -> first streamed byte, the function as run.sh starts it against a bare ASGI app
# under the same uvicorn, interleaved; COMPARE=<checkout> adds another version of the function to the rounds.
bench-coldstart: install
	$(PY) benchmarks/cold_start.py $(if $(RUNS),--runs $(RUNS)) $(if $(COMPARE),--compare $(COMPARE))

# Per-key limits: admission's cost on the time to first token, and a greedy key against light ones with and
# without max_streams (benchmarks/key_limits.py), on the local stack.
bench-limits: install
	$(PY) benchmarks/key_limits.py

bench-parser: install
	$(PY) benchmarks/token_iterator.py

clean:
	rm -rf $(VENV) .venv-checkov .venv-sagemaker .venv-frameworks node_modules cdk.out .pytest_cache .hypothesis .mypy_cache .ruff_cache
