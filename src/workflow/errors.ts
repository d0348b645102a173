/** The workflow engine's errors, in the platform's catalogue (stable codes, RFC 9457 problems). */
import { defineErrors } from '../kernel/index.ts';

export const WorkflowErrors = defineErrors({
  'workflow-stale': {
    status: 409,
    title: 'The workflow instance changed since the version the client saw',
  },
  'workflow-action-unavailable': {
    status: 409,
    title: 'The action is not available in the current state',
  },
  'workflow-invalid-definition': {
    status: 422,
    title: 'The workflow definition is invalid',
  },
  'workflow-invalid-calendar': {
    status: 422,
    title: 'The working calendar is invalid',
  },
  'workflow-request-reused': {
    status: 409,
    title: 'The request id was already used for a different action',
  },
});
