/**
 * The standard case process (GB/T 30428 style), shipped as the default definition `ops.case`:
 * 立案 (registered) → 派遣 (dispatch: one branch per department, 联勤联动) → 处置 (handling) →
 * 反馈 (report back, per department; the case moves on when all have) → 核查 (verify on site) →
 * 结案 (closed) → 评价 (rate), with 退回 (return), 挂账 (suspend), 作废 (cancel), 合并 (merge) and
 * 重启 (reopen within a window). The SLA clock starts at dispatch; a breach escalates the case
 * from the street centre to the district centre, then to the city centre.
 */
import type { Effect, Guard, WorkflowDefinition } from '../workflow/index.ts';

export const CASE_WORKFLOW_KEY = 'ops.case';
export const TASK_WORKFLOW_KEY = 'ops.task';

/** Days after closing during which a case may be reopened (重启). */
export const REOPEN_WINDOW_DAYS = 7;

const n = (zh: string, en: string) => ({ zh, en });

export const CASE_WORKFLOW: WorkflowDefinition = {
  key: CASE_WORKFLOW_KEY,
  name: n('城市运行案件处置', 'City operations case'),
  description:
    'Standard incident process: register, dispatch, handle, report back, verify, close, rate; with return, suspend, cancel, merge and reopen.',
  initial: 'registered',
  calendar: 'cn-mainland',
  sla: { duration: 'P5D', until: 'closed' },
  states: {
    registered: {
      name: n('已立案', 'Registered'),
      actions: {
        dispatch: {
          name: n('派遣', 'Dispatch'),
          to: 'handling',
          roles: ['ops-operator', 'system'],
          assigns: true,
        },
        cancel: {
          name: n('作废', 'Cancel'),
          to: 'cancelled',
          roles: ['ops-operator'],
          commentRequired: true,
        },
        merge: {
          name: n('合并', 'Merge into another case'),
          to: 'merged',
          roles: ['ops-operator'],
          commentRequired: true,
        },
      },
    },
    handling: {
      name: n('处置中', 'Being handled'),
      parallel: { join: 'verifying' },
      sla: { duration: 'P1D', nearDue: 0.75, onBreach: 'escalate' },
      actions: {
        report: {
          name: n('反馈', 'Report back'),
          branch: 'complete',
          roles: ['assignee'],
          guards: ['subtasks-done'],
        },
        return: {
          name: n('退回', 'Return to the centre'),
          to: 'registered',
          roles: ['assignee'],
          commentRequired: true,
        },
        suspend: {
          name: n('挂账', 'Suspend'),
          to: 'suspended',
          roles: ['ops-operator'],
          commentRequired: true,
        },
        merge: {
          name: n('合并', 'Merge into another case'),
          to: 'merged',
          roles: ['ops-operator'],
          commentRequired: true,
        },
        escalate: {
          name: n('上报', 'Escalate'),
          roles: ['system', 'ops-operator'],
          guards: ['below-city-level'],
          effects: ['escalate'],
          restartsClock: true,
        },
      },
    },
    verifying: {
      name: n('待核查', 'Awaiting verification'),
      sla: { duration: 'PT4H' },
      actions: {
        verify: {
          name: n('核查通过', 'Verified: close'),
          to: 'closed',
          roles: ['ops-operator', 'grid-inspector'],
          effects: ['mark-closed'],
        },
        reject: {
          name: n('核查不通过', 'Not resolved: back to handling'),
          to: 'handling',
          roles: ['ops-operator', 'grid-inspector'],
          commentRequired: true,
        },
      },
    },
    suspended: {
      name: n('已挂账', 'Suspended'),
      actions: {
        resume: { name: n('恢复处置', 'Resume'), to: 'handling', roles: ['ops-operator'] },
        cancel: {
          name: n('作废', 'Cancel'),
          to: 'cancelled',
          roles: ['ops-operator'],
          commentRequired: true,
        },
      },
    },
    closed: {
      name: n('已结案', 'Closed'),
      actions: {
        rate: {
          name: n('评价', 'Rate'),
          to: 'evaluated',
          roles: ['reporter', 'ops-operator'],
          effects: ['record-rating'],
        },
        reopen: {
          name: n('重启', 'Reopen'),
          to: 'registered',
          roles: ['reporter', 'ops-operator'],
          guards: ['within-reopen-window'],
          commentRequired: true,
        },
      },
    },
    evaluated: {
      name: n('已评价', 'Rated'),
      actions: {
        reopen: {
          name: n('重启', 'Reopen'),
          to: 'registered',
          roles: ['reporter', 'ops-operator'],
          guards: ['within-reopen-window'],
          commentRequired: true,
        },
      },
    },
    cancelled: { name: n('已作废', 'Cancelled'), final: true },
    merged: { name: n('已合并', 'Merged'), final: true },
  },
};

/** A sub-task (子任务) of a case, handed to one organisation: open → done. */
export const TASK_WORKFLOW: WorkflowDefinition = {
  key: TASK_WORKFLOW_KEY,
  name: n('案件子任务', 'Case sub-task'),
  initial: 'open',
  calendar: 'cn-mainland',
  states: {
    open: {
      name: n('待办', 'Open'),
      sla: { duration: 'P1D' },
      actions: {
        complete: { name: n('完成', 'Complete'), to: 'done', roles: ['assignee'] },
        cancel: {
          name: n('撤销', 'Withdraw'),
          to: 'withdrawn',
          roles: ['ops-operator'],
          commentRequired: true,
        },
      },
    },
    done: { name: n('已完成', 'Done'), final: true },
    withdrawn: { name: n('已撤销', 'Withdrawn'), final: true },
  },
};

export type CaseLevel = 'street' | 'district' | 'city';
const NEXT_LEVEL: Record<CaseLevel, CaseLevel | undefined> = {
  street: 'district',
  district: 'city',
  city: undefined,
};

export function levelOf(data: Record<string, unknown>): CaseLevel {
  const l = data['level'];
  return l === 'district' || l === 'city' ? l : 'street';
}

/** Guards of the case process. */
export const CASE_GUARDS: Record<string, Guard> = {
  'below-city-level': ({ instance }) =>
    levelOf(instance.data) === 'city' ? 'The case is already with the city operations centre' : undefined,
  'within-reopen-window': ({ instance, now }) => {
    const closedAt =
      typeof instance.data['closedAt'] === 'string' ? Date.parse(instance.data['closedAt']) : NaN;
    if (Number.isNaN(closedAt)) return undefined;
    return now.getTime() - closedAt > REOPEN_WINDOW_DAYS * 86_400_000
      ? `Cases can be reopened within ${REOPEN_WINDOW_DAYS} days of closing`
      : undefined;
  },
};

/** Effects of the case process: facts kept in the instance's data (the case row follows them). */
export const CASE_EFFECTS: Record<string, Effect> = {
  escalate: ({ instance }) => {
    const next = NEXT_LEVEL[levelOf(instance.data)];
    if (!next) return undefined;
    const escalations = typeof instance.data['escalations'] === 'number' ? instance.data['escalations'] : 0;
    return { data: { level: next, escalations: escalations + 1 } };
  },
  'mark-closed': ({ now }) => ({ data: { closedAt: now.toISOString() } }),
  'record-rating': ({ request }) => {
    const rating = request.details?.['rating'];
    const comment = request.comment ?? null;
    return { data: { rating: typeof rating === 'number' ? rating : null, ratingComment: comment } };
  },
};
