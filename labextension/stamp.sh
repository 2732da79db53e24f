#!/usr/bin/env bash
# The hash of everything the extension's build is made from, from the repository root. `npm run build:prod` writes
# it beside the build (spark_nb/labextension/source.sha256); .ci/run compares: a build committed without
# rebuilding after a source change fails CI. (The build itself differs byte for byte between checkouts in different
# folders: the bundler's module ids come from paths, so the stamp is what can be compared.)
set -euo pipefail
cd "$(dirname "$0")/.."
sha256sum labextension/src/*.ts labextension/schema/*.json labextension/package.json labextension/package-lock.json labextension/tsconfig.json \
    | sha256sum | cut -d' ' -f1
