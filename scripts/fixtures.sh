#!/usr/bin/env bash
# Placeholder: generates test models with arbor mkmodel (owned by the mkmodel work).
exit 0
