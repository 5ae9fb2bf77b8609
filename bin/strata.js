#!/usr/bin/env node
// Entry point of the `strata` command; the TypeScript sources are compiled to dist/ by
// `npm install` (the package's `prepare` script).
import '../dist/src/cli/main.js';
