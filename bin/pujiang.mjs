#!/usr/bin/env node
// Entry point of the `pujiang` command: loads the TypeScript sources through tsx, then the CLI.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli.ts');
