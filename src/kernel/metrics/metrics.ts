/**
 * Prometheus metrics. One registry per running platform (not the library's global one), so that
 * several instances in one test process do not collide.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface Metrics {
  readonly registry: Registry;
  readonly httpDuration: Histogram<'method' | 'route' | 'status_code'>;
  readonly busPublished: Counter<'topic'>;
  readonly busPublishFailures: Counter;
  readonly busDelivered: Counter<'group' | 'outcome'>;
  readonly busConsumerLag: Histogram<'group'>;
  readonly busDeadLetters: Counter<'group'>;
  /** Registers a counter of a module's own (names start with `pujiang_<module>_`). */
  counter<L extends string>(args: { name: string; help: string; labelNames?: readonly L[] }): Counter<L>;
  /** Registers a histogram of a module's own (seconds, unless the name says otherwise). */
  histogram<L extends string>(args: {
    name: string;
    help: string;
    labelNames?: readonly L[];
    buckets: number[];
  }): Histogram<L>;
  /** Registers a gauge whose value is read at scrape time; a failing reader reports nothing. */
  gauge(args: {
    name: string;
    help: string;
    labelNames?: string[];
    collect: (g: Gauge) => Promise<void> | void;
  }): void;
  render(): Promise<string>;
  readonly contentType: string;
}

/** Creates the platform's metrics; `defaults` adds process metrics (CPU, memory, event loop). */
export function createMetrics(options: { defaults?: boolean } = {}): Metrics {
  const registry = new Registry();
  if (options.defaults ?? true) collectDefaultMetrics({ register: registry, prefix: 'pujiang_' });
  const httpDuration = new Histogram({
    name: 'pujiang_http_request_duration_seconds',
    help: 'HTTP request latency by method, route template and status code',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  return {
    registry,
    httpDuration,
    busPublished: new Counter({
      name: 'pujiang_bus_published_total',
      help: 'Events relayed from the outbox to the bus, by topic',
      labelNames: ['topic'] as const,
      registers: [registry],
    }),
    busPublishFailures: new Counter({
      name: 'pujiang_bus_publish_failures_total',
      help: 'Attempts to publish an outbox event that failed (the event stays pending)',
      registers: [registry],
    }),
    busDelivered: new Counter({
      name: 'pujiang_bus_deliveries_total',
      help: 'Event deliveries to consumer groups, by outcome (ack, retry, dead_letter)',
      labelNames: ['group', 'outcome'] as const,
      registers: [registry],
    }),
    busConsumerLag: new Histogram({
      name: 'pujiang_bus_consumer_lag_seconds',
      help: 'Time from an event being committed to a consumer group acknowledging it',
      labelNames: ['group'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
    busDeadLetters: new Counter({
      name: 'pujiang_bus_dead_letters_total',
      help: 'Events a consumer group gave up on after its maximum deliveries',
      labelNames: ['group'] as const,
      registers: [registry],
    }),
    counter({ name, help, labelNames }) {
      return new Counter({ name, help, labelNames: labelNames ?? [], registers: [registry] });
    },
    histogram({ name, help, labelNames, buckets }) {
      return new Histogram({ name, help, labelNames: labelNames ?? [], buckets, registers: [registry] });
    },
    gauge({ name, help, labelNames, collect }) {
      new Gauge({
        name,
        help,
        labelNames: labelNames ?? [],
        registers: [registry],
        async collect() {
          try {
            await collect(this);
          } catch {
            // A scrape must not fail because one source (e.g. the database) is down.
          }
        },
      });
    },
    render: () => registry.metrics(),
    contentType: registry.contentType,
  };
}
