/**
 * The workflow module's public surface (流程引擎): declarative, versioned state machines with
 * roles, guards, SLA timers over working calendars, escalation, parallel branches and sub-tasks —
 * one engine for incidents, service applications and data-sharing approvals. Owning modules
 * register their guards and effects with `registerWorkflowHooks`, plan instances with
 * `planInstance`/`startRiders`, and take actions with `transition`.
 */
import { fileURLToPath } from 'node:url';
import type { PlatformModule } from '../kernel/index.ts';
import { createTrustRuntime } from '../trust/index.ts';
import { DEFAULT_CALENDARS } from './calendar.ts';
import { seedCalendars } from './workflow.store.ts';
import { registerWorkflowRoutes } from './workflow.routes.ts';
import { startTimerSweeper } from './workflow.service.ts';

export type { WorkflowDefinition, StateDefinition, ActionDefinition } from './definition.ts';
export { DefinitionSchema } from './definition.ts';
export type {
  Attachment,
  AvailableAction,
  Effect,
  EffectInput,
  Guard,
  GuardInput,
  HistoryEntry,
  Instance,
  LoadedInstance,
  TransitionPlan,
  TransitionRequest,
} from './workflow.model.ts';
export { rolesFor } from './workflow.model.ts';
export {
  registerWorkflowHooks,
  planInstance,
  startRiders,
  startRidersOf,
  transition,
  describeInstance,
  ensureDefinition,
  publishDefinition,
  checkDefinition,
  getDefinition,
  slaClock,
  fireTimer,
  sweepTimers,
  loadInstance,
  instancesOf,
  historyOf,
  subtasksOf,
  instancesWithAttachment,
} from './workflow.service.ts';
export type { WorkflowHooks, TransitionOutcome } from './workflow.service.ts';
export { WorkflowErrors } from './errors.ts';
export { DEFINITION_ROLES } from './workflow.routes.ts';
export { DEFAULT_CALENDARS, addWorkingTime, workingTimeBetween } from './calendar.ts';
export type { Calendar } from './calendar.ts';

/** The workflow module: migrations, shipped calendars, the definitions API and the SLA timer sweeper. */
export const workflowModule: PlatformModule = {
  name: 'workflow',
  migrationsDir: fileURLToPath(new URL('./migrations/', import.meta.url)),
  async start(app, { config, database, logger, metrics }) {
    await seedCalendars(database.db, DEFAULT_CALENDARS);
    registerWorkflowRoutes(app, createTrustRuntime(config, database));
    const sweeper = startTimerSweeper({
      database,
      logger,
      metrics,
      intervalMs: config.workflowTimerIntervalMs,
    });
    return { stop: () => sweeper.stop() };
  },
};
