/** TypeBox schemas of the cases API: validation, types and OpenAPI from one source. */
import { Type, type Static } from 'typebox';
import { CATEGORY_PATTERN } from './categories.ts';

const Uuid = Type.String({ format: 'uuid' });
const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$' });
const Level = Type.Union([Type.Literal('street'), Type.Literal('district'), Type.Literal('city')]);
export const SOURCES = ['citizen', 'hotline', 'inspector', 'sensor', 'department', 'assignment'] as const;
const Source = Type.Union([
  Type.Literal('citizen'),
  Type.Literal('hotline'),
  Type.Literal('inspector'),
  Type.Literal('sensor'),
  Type.Literal('department'),
  Type.Literal('assignment'),
]);
const Category = Type.String({
  pattern: CATEGORY_PATTERN,
  description: 'Category id, e.g. event:0102 (暴露垃圾)',
});
const Name = Type.Object({ zh: Type.String(), en: Type.String() });

export const Point = Type.Object(
  {
    lon: Type.Number({ minimum: -180, maximum: 180 }),
    lat: Type.Number({ minimum: -90, maximum: 90 }),
  },
  { additionalProperties: false },
);

export const CaseCreate = Type.Object(
  {
    source: Source,
    category: Category,
    description: Type.String({ minLength: 1, maxLength: 4000 }),
    location: Point,
    address: Type.Optional(Type.String({ maxLength: 300 })),
    /** Twin entities the case is about (e.g. the manhole cover), by NGSI-LD id. */
    entityIds: Type.Optional(
      Type.Array(Type.String({ pattern: '^urn:[A-Za-z0-9][A-Za-z0-9-]{0,31}:\\S{1,250}$' }), {
        maxItems: 20,
        uniqueItems: true,
      }),
    ),
    /** Uploaded photos (POST /api/v1/media first), by SHA-256. */
    photos: Type.Optional(Type.Array(Sha256, { maxItems: 10, uniqueItems: true })),
    reporter: Type.Optional(
      Type.Object(
        {
          name: Type.Optional(Type.String({ minLength: 1, maxLength: 50 })),
          phone: Type.Optional(Type.String({ pattern: '^\\+?[0-9][0-9 -]{4,19}$' })),
          email: Type.Optional(Type.String({ format: 'email', maxLength: 200 })),
        },
        { additionalProperties: false },
      ),
    ),
    /** Dispatch to these departments instead of the matrix's choice (a reason is then required). */
    departmentIds: Type.Optional(Type.Array(Uuid, { minItems: 1, maxItems: 10, uniqueItems: true })),
    reason: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })),
    attributes: Type.Optional(
      Type.Record(Type.String({ maxLength: 50 }), Type.Unknown(), { maxProperties: 20 }),
    ),
  },
  { additionalProperties: false },
);
export type CaseCreate = Static<typeof CaseCreate>;

export const TransitionBody = Type.Object(
  {
    action: Type.String({ pattern: '^[a-z][a-z0-9-]{0,62}$' }),
    /** The case version the client saw; a stale one answers 409. */
    version: Type.Optional(Type.Integer({ minimum: 1 })),
    comment: Type.Optional(Type.String({ maxLength: 2000 })),
    attachments: Type.Optional(Type.Array(Sha256, { maxItems: 10, uniqueItems: true })),
    /** For dispatch: the departments (the matrix's choice when absent). */
    departmentIds: Type.Optional(Type.Array(Uuid, { minItems: 1, maxItems: 10, uniqueItems: true })),
    /** For rate: 1 (poor) … 5 (very satisfied). */
    rating: Type.Optional(Type.Integer({ minimum: 1, maximum: 5 })),
    /** For merge: the case this one duplicates. */
    into: Type.Optional(Uuid),
  },
  { additionalProperties: false },
);
export type TransitionBody = Static<typeof TransitionBody>;

const Photo = Type.Object({ sha256: Type.String(), contentType: Type.String(), size: Type.Integer() });

export const CaseSummary = Type.Object({
  id: Uuid,
  number: Type.String(),
  source: Source,
  channel: Type.String(),
  category: Type.String(),
  categoryName: Type.String(),
  description: Type.String(),
  address: Type.Union([Type.String(), Type.Null()]),
  location: Point,
  area: Type.Object({
    code: Type.String(),
    path: Type.String(),
    district: Type.String(),
    street: Type.Union([Type.String(), Type.Null()]),
  }),
  level: Level,
  status: Type.String(),
  statusName: Name,
  open: Type.Boolean(),
  departments: Type.Array(Type.Object({ id: Type.String(), name: Type.String() })),
  sla: Type.Object({
    state: Type.Union([
      Type.Literal('overdue'),
      Type.Literal('near-due'),
      Type.Literal('on-time'),
      Type.Literal('none'),
    ]),
    stateDueAt: Type.Union([Type.String(), Type.Null()]),
    dueAt: Type.Union([Type.String(), Type.Null()]),
    breachedAt: Type.Union([Type.String(), Type.Null()]),
    escalations: Type.Integer(),
  }),
  version: Type.Integer(),
  createdAt: Type.String(),
  updatedAt: Type.String(),
  closedAt: Type.Union([Type.String(), Type.Null()]),
});
export type CaseSummary = Static<typeof CaseSummary>;

export const TimelineEntry = Type.Object({
  seq: Type.Integer(),
  action: Type.String(),
  actionName: Name,
  from: Type.String(),
  to: Type.String(),
  actor: Type.String(),
  org: Type.Union([Type.String(), Type.Null()]),
  at: Type.String(),
  comment: Type.Union([Type.String(), Type.Null()]),
  attachments: Type.Array(Photo),
  assignees: Type.Union([Type.Array(Type.String()), Type.Null()]),
});

export const CaseDetail = Type.Intersect([
  CaseSummary,
  Type.Object({
    routedBy: Type.Union([Type.String(), Type.Null()]),
    routeReason: Type.Union([Type.String(), Type.Null()]),
    entityIds: Type.Array(Type.String()),
    photos: Type.Array(Photo),
    mediaUrls: Type.Array(Type.String()),
    attributes: Type.Record(Type.String(), Type.Unknown()),
    reporter: Type.Object({
      name: Type.Union([Type.String(), Type.Null()]),
      phone: Type.Union([Type.String(), Type.Null()]),
      email: Type.Union([Type.String(), Type.Null()]),
      masked: Type.Boolean(),
    }),
    mergedInto: Type.Union([Type.String(), Type.Null()]),
    rating: Type.Union([Type.Integer(), Type.Null()]),
    ratingComment: Type.Union([Type.String(), Type.Null()]),
    timeline: Type.Array(TimelineEntry),
    actions: Type.Array(
      Type.Object({
        action: Type.String(),
        name: Name,
        to: Type.Union([Type.String(), Type.Null()]),
        commentRequired: Type.Boolean(),
        assigns: Type.Boolean(),
      }),
    ),
    subtasks: Type.Array(
      Type.Object({
        id: Type.String(),
        orgId: Type.String(),
        description: Type.String(),
        state: Type.String(),
        version: Type.Integer(),
        dueAt: Type.Union([Type.String(), Type.Null()]),
      }),
    ),
  }),
]);
export type CaseDetail = Static<typeof CaseDetail>;

export const Created = Type.Object({
  case: CaseDetail,
  /** Open cases of the same category nearby, reported recently: candidates to merge. */
  duplicates: Type.Array(
    Type.Object({
      id: Type.String(),
      number: Type.String(),
      distanceMetres: Type.Number(),
      status: Type.String(),
    }),
  ),
});

export const CaseQuery = Type.Object({
  status: Type.Optional(Type.String({ maxLength: 200, description: 'Comma-separated states' })),
  category: Type.Optional(Type.String({ maxLength: 500, description: 'Comma-separated category ids' })),
  area: Type.Optional(Type.String({ pattern: '^[0-9]{6}([0-9]{3}){0,3}$' })),
  department: Type.Optional(Uuid),
  level: Type.Optional(Level),
  source: Type.Optional(Source),
  sla: Type.Optional(
    Type.Union([
      Type.Literal('overdue'),
      Type.Literal('near-due'),
      Type.Literal('on-time'),
      Type.Literal('none'),
    ]),
  ),
  open: Type.Optional(Type.Boolean()),
  from: Type.Optional(Type.String({ format: 'date-time' })),
  to: Type.Optional(Type.String({ format: 'date-time' })),
  /** Order by the state deadline, soonest first (supervision lists) instead of newest first. */
  order: Type.Optional(Type.Union([Type.Literal('newest'), Type.Literal('due')])),
  limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }),
  /** The `next` cursor of the previous page. */
  after: Type.Optional(Type.String({ maxLength: 200 })),
});
export type CaseQuery = Static<typeof CaseQuery>;

export const CasePage = Type.Object({
  items: Type.Array(CaseSummary),
  next: Type.Union([Type.String(), Type.Null()]),
});

export const SubtaskCreate = Type.Object(
  { orgId: Uuid, description: Type.String({ minLength: 1, maxLength: 1000 }) },
  { additionalProperties: false },
);

export const StatsQuery = Type.Object({
  by: Type.Union([
    Type.Literal('area'),
    Type.Literal('department'),
    Type.Literal('category'),
    Type.Literal('level'),
    Type.Literal('status'),
  ]),
  area: Type.Optional(Type.String({ pattern: '^[0-9]{6}([0-9]{3}){0,3}$' })),
  from: Type.Optional(Type.String({ format: 'date-time' })),
  to: Type.Optional(Type.String({ format: 'date-time' })),
});

export const StatsRow = Type.Object({
  key: Type.String(),
  name: Type.String(),
  total: Type.Integer(),
  open: Type.Integer(),
  overdue: Type.Integer(),
  closed: Type.Integer(),
  meanHoursToClose: Type.Union([Type.Number(), Type.Null()]),
});
