// Worker entry of bench/twin-history's load generator: loads the TypeScript worker through tsx,
// which a worker thread does not inherit from the benchmark's `--import tsx` on every Node version.
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
