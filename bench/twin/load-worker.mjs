// Worker entry of `httpLoad` (load.ts): loads the TypeScript worker through tsx, which a worker
// thread does not inherit from the benchmark's `--import tsx` on every Node version.
import { register } from 'tsx/esm/api';

register();
await import('./load-worker.ts');
