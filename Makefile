# The two commands a newcomer needs (see README.md):
#   make demo   install what is missing, build, start a demo server with a throwaway key
#   make test   install what is missing, run the whole test suite
.PHONY: demo test lint setup

setup:
	./scripts/setup

demo: setup
	cargo run --locked -- demo

test:
	./scripts/setup --test
	cargo test --locked --all-targets

lint: setup
	cargo fmt --check
	cargo clippy --locked --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps
