#!/usr/bin/env bash
# Placeholder: installs and builds the llama.cpp oracle (owned by tests/oracle work).
exit 0
