/**
 * Working calendars (工作日历) for the workflow engine's SLA timers: when is a task due if it has
 * "2 working days", how much working time is left, how far past due it is.
 *
 * A calendar is data — a fixed UTC offset (no daylight saving; mainland China has none), the working
 * periods of a working day, the ISO weekdays normally worked, and two date lists that override the
 * weekday rule: `holidays` (off) and `workdays` (make-up working days, 调休). Days after the last
 * listed date follow the weekday rule alone, so each year's official schedule must be added before
 * the year starts.
 *
 * All arithmetic goes through one function, the working time elapsed since the epoch at an instant
 * (`workingMsAt`); `workingTimeBetween` is a difference of two of its values and `addWorkingTime` is
 * its inverse, so the two agree exactly and both take the same few steps for an hour or a decade.
 * Working periods lie within one local day ("24:00" may end the last one); night shifts that cross
 * midnight are not supported.
 */
import { readFileSync } from 'node:fs';
import { Type, type Static } from 'typebox';
import { Compile } from 'typebox/compile';
import { Settings } from 'typebox/system';

const TIME_PATTERN = '^(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00)$';
const DATE_PATTERN = '^[0-9]{4}-[0-9]{2}-[0-9]{2}$';
const CODE_PATTERN = '^[a-z0-9]+(?:-[a-z0-9]+)*$';
const MIN_OFFSET_MINUTES = -720;
const MAX_OFFSET_MINUTES = 840;

const TimeOfDay = Type.String({ pattern: TIME_PATTERN, description: 'Local time HH:MM, 00:00–24:00' });
const LocalDate = Type.String({ pattern: DATE_PATTERN, description: 'Local date YYYY-MM-DD' });

/** The shape of a working calendar; `checkCalendar` adds the rules a schema cannot express. */
export const CalendarSchema = Type.Object(
  {
    code: Type.String({ pattern: CODE_PATTERN, examples: ['cn-mainland', '24x7'] }),
    name: Type.Object(
      { zh: Type.String({ minLength: 1 }), en: Type.String({ minLength: 1 }) },
      { additionalProperties: false },
    ),
    source: Type.Optional(
      Type.String({ description: 'Where the dates come from, and who must update them when' }),
    ),
    utcOffsetMinutes: Type.Integer({
      minimum: MIN_OFFSET_MINUTES,
      maximum: MAX_OFFSET_MINUTES,
      description: 'Fixed offset of local time from UTC (480 = UTC+8, Beijing time)',
    }),
    workingHours: Type.Array(Type.Tuple([TimeOfDay, TimeOfDay]), {
      description: 'Working periods [start, end) of a working day, local time, in order, not overlapping',
    }),
    weekdays: Type.Array(Type.Integer({ minimum: 1, maximum: 7 }), {
      description: 'ISO weekdays normally worked (1 = Monday … 7 = Sunday), in order',
    }),
    holidays: Type.Array(LocalDate, { description: 'Days off even if their weekday is worked, in order' }),
    workdays: Type.Array(LocalDate, {
      description: 'Make-up working days (调休) on days that are otherwise off, in order',
    }),
  },
  { additionalProperties: false },
);
export type Calendar = Static<typeof CalendarSchema>;

const DAY_MS = 86_400_000;
const MINUTE_MS = 60_000;
/** Days from the epoch to the last day a Date can hold (±8.64e15 ms), plus one for any UTC offset. */
const LAST_DAY = 100_000_001;
const MAX_DATE_MS = 8.64e15;
const WEEKDAY_NAMES = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'];

const shapeValidator = Compile(CalendarSchema);

// ---------------------------------------------------------------------------------------------
// Checking
// ---------------------------------------------------------------------------------------------

/**
 * Rejects a calendar with every problem spelled out, because operators edit these files by hand;
 * shape problems come first, the rules between values once the shape is right.
 */
export function checkCalendar(
  input: unknown,
): { ok: true; calendar: Calendar } | { ok: false; problems: string[] } {
  if (!shapeValidator.Check(input)) return { ok: false, problems: shapeProblems(input) };
  const problems = [
    ...workingHoursProblems(input.workingHours),
    ...weekdayProblems(input.weekdays),
    ...dateListProblems('holidays', input.holidays),
    ...dateListProblems('workdays', input.workdays),
    ...crossProblems(input),
  ];
  return problems.length === 0 ? { ok: true, calendar: input } : { ok: false, problems };
}

/** Shape problems, one per place, worded for the field they are in (TypeBox stops at `maxErrors`). */
function shapeProblems(input: unknown): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  const add = (path: string, problem: string): void => {
    if (seen.has(path)) return;
    seen.add(path);
    problems.push(`${path}: ${problem}`);
  };
  const errors = shapeValidator.Errors(input);
  for (const error of errors) {
    const segments = error.instancePath
      .split('/')
      .slice(1)
      .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));
    const path = displayPath(segments);
    const value = valueAt(input, segments);
    switch (error.keyword) {
      case 'boolean': {
        // A `false` schema: a third item in a working period, or a property not in the schema.
        const parent = segments.slice(0, -1);
        if (/^[0-9]+$/.test(segments.at(-1) ?? ''))
          add(displayPath(parent), `${show(valueAt(input, parent))} is not a ["HH:MM", "HH:MM"] pair`);
        else add(path, unknownField(segments));
        break;
      }
      case 'required':
        for (const name of error.params.requiredProperties)
          add(displayPath([...segments, name]), 'is missing');
        break;
      case 'additionalProperties':
        for (const name of error.params.additionalProperties)
          add(displayPath([...segments, name]), unknownField([...segments, name]));
        break;
      case 'pattern':
        if (error.params.pattern === DATE_PATTERN) add(path, `${show(value)} is not a date (YYYY-MM-DD)`);
        else if (error.params.pattern === TIME_PATTERN)
          add(path, `${show(value)} is not a time of day (HH:MM, 00:00–24:00)`);
        else add(path, `${show(value)} must be lowercase letters and digits joined by "-"`);
        break;
      case 'minimum':
      case 'maximum':
        if (segments[0] === 'weekdays')
          add(path, `${show(value)} is not an ISO weekday (1 = Monday … 7 = Sunday)`);
        else add(path, `${show(value)} is outside ${MIN_OFFSET_MINUTES}..${MAX_OFFSET_MINUTES}`);
        break;
      case 'minItems':
        add(path, `${show(value)} is not a ["HH:MM", "HH:MM"] pair`);
        break;
      case 'minLength':
        add(path, 'is empty');
        break;
      case 'type':
        add(path, `${show(value)} ${error.message}`);
        break;
      default:
        add(path, error.message);
    }
  }
  if (errors.length >= Settings.Get().maxErrors)
    problems.push('… and perhaps more: fix these and check again');
  return problems;
}

function unknownField(segments: readonly string[]): string {
  return segments.length === 1 ? 'is not a calendar field' : 'is not allowed here';
}

function show(value: unknown): string {
  return value === undefined ? 'undefined' : JSON.stringify(value);
}

function displayPath(segments: readonly string[]): string {
  if (segments.length === 0) return 'calendar';
  return segments.map((s, i) => (/^[0-9]+$/.test(s) ? `[${s}]` : i === 0 ? s : `.${s}`)).join('');
}

function valueAt(input: unknown, segments: readonly string[]): unknown {
  let value = input;
  for (const segment of segments) {
    if (typeof value !== 'object' || value === null) return undefined;
    value = (value as Record<string, unknown>)[segment];
  }
  return value;
}

function minutesOf(time: string): number {
  return Number(time.slice(0, 2)) * 60 + Number(time.slice(3, 5));
}

function workingHoursProblems(periods: Calendar['workingHours']): string[] {
  if (periods.length === 0) return ['workingHours: is empty, so the calendar has no working time at all'];
  const problems: string[] = [];
  const show = ([start, end]: readonly [string, string]): string =>
    `${JSON.stringify(start)}–${JSON.stringify(end)}`;
  let previous: { index: number; period: readonly [string, string] } | undefined;
  periods.forEach((period, index) => {
    const start = minutesOf(period[0]);
    const end = minutesOf(period[1]);
    if (end < start) problems.push(`workingHours[${index}]: ${show(period)} ends before it starts`);
    else if (end === start) problems.push(`workingHours[${index}]: ${show(period)} is empty`);
    else {
      if (previous !== undefined) {
        const before = `workingHours[${previous.index}] ${show(previous.period)}`;
        if (start < minutesOf(previous.period[0]))
          problems.push(
            `workingHours[${index}]: ${show(period)} starts before ${before}; list periods in order`,
          );
        else if (start < minutesOf(previous.period[1]))
          problems.push(`workingHours[${index}]: ${show(period)} overlaps ${before}`);
      }
      previous = { index, period };
    }
  });
  return problems;
}

function weekdayProblems(weekdays: readonly number[]): string[] {
  const problems: string[] = [];
  weekdays.forEach((weekday, index) => {
    const previous = weekdays[index - 1];
    if (previous === undefined) return;
    if (weekday === previous) problems.push(`weekdays[${index}]: ${weekday} is listed twice`);
    else if (weekday < previous)
      problems.push(`weekdays[${index}]: ${weekday} comes after ${previous}; list weekdays in order`);
  });
  return problems;
}

/** The day number (days since 1970-01-01) of a YYYY-MM-DD date, or undefined if there is no such day. */
function dayOfDate(date: string): number | undefined {
  const year = Number(date.slice(0, 4));
  const month = Number(date.slice(5, 7));
  const day = Number(date.slice(8, 10));
  const utc = new Date(0);
  utc.setUTCFullYear(year, month - 1, day);
  if (utc.getUTCFullYear() !== year || utc.getUTCMonth() !== month - 1 || utc.getUTCDate() !== day)
    return undefined;
  return utc.getTime() / DAY_MS;
}

function dateOfDay(day: number): string {
  return new Date(day * DAY_MS).toISOString().slice(0, 10);
}

function dateListProblems(field: 'holidays' | 'workdays', dates: readonly string[]): string[] {
  const problems: string[] = [];
  let previous: { date: string; day: number } | undefined;
  dates.forEach((date, index) => {
    const day = dayOfDate(date);
    if (day === undefined) {
      problems.push(`${field}[${index}]: ${JSON.stringify(date)} is not a date`);
      return;
    }
    if (previous !== undefined && day === previous.day)
      problems.push(`${field}[${index}]: ${JSON.stringify(date)} is listed twice`);
    else if (previous !== undefined && day < previous.day)
      problems.push(
        `${field}[${index}]: ${JSON.stringify(date)} comes after ${JSON.stringify(previous.date)}; list dates in order`,
      );
    previous = { date, day };
  });
  return problems;
}

function crossProblems(calendar: Calendar): string[] {
  const problems: string[] = [];
  if (calendar.weekdays.length === 0 && calendar.workdays.length === 0)
    problems.push('weekdays, workdays: both are empty, so the calendar has no working time at all');
  const holidayIndex = new Map(calendar.holidays.map((date, index) => [date, index]));
  const worked = new Set(calendar.weekdays);
  calendar.workdays.forEach((date, index) => {
    const day = dayOfDate(date);
    if (day === undefined) return;
    const holiday = holidayIndex.get(date);
    if (holiday !== undefined)
      problems.push(
        `workdays[${index}]: ${JSON.stringify(date)} is also holidays[${holiday}]; a day is either off or worked`,
      );
    else if (worked.has(isoWeekday(day)))
      problems.push(
        `workdays[${index}]: ${JSON.stringify(date)} is a ${weekdayName(day)}, already worked; ` +
          'workdays are make-up days that would otherwise be off',
      );
  });
  return problems;
}

// ---------------------------------------------------------------------------------------------
// Arithmetic
// ---------------------------------------------------------------------------------------------

/** A calendar turned into numbers once, for the arithmetic below. */
interface Compiled {
  code: string;
  offsetMs: number;
  /** Working periods of a working day, ms after local midnight. */
  periods: readonly { start: number; end: number }[];
  /** Working time in one working day. */
  dayMs: number;
  worksWeekday: (day: number) => boolean;
  holidays: ReadonlySet<number>;
  workdays: ReadonlySet<number>;
  /** `weekPrefix[k]`: worked weekdays among days 0..k-1 of a week counted from day 0 (a Thursday). */
  weekPrefix: readonly number[];
  weekDays: number;
  /** Days whose listing changes the weekday rule (+1 worked, −1 off), in order, and running sums. */
  exceptionDays: readonly number[];
  exceptionSums: readonly number[];
  lastWorkday: number | undefined;
}

/** Calendars are immutable values: each is checked and compiled on first use only. */
const compiledCache = new WeakMap<Calendar, Compiled>();

function compile(calendar: Calendar): Compiled {
  const cached = compiledCache.get(calendar);
  if (cached !== undefined) return cached;
  const checked = checkCalendar(calendar);
  if (!checked.ok)
    throw new Error(`calendar ${JSON.stringify(calendar.code)}: ${checked.problems.join('; ')}`);
  const periods = calendar.workingHours.map(([start, end]) => ({
    start: minutesOf(start) * MINUTE_MS,
    end: minutesOf(end) * MINUTE_MS,
  }));
  const worked = new Set(calendar.weekdays);
  const worksWeekday = (day: number): boolean => worked.has(isoWeekday(day));
  const weekPrefix = [0];
  for (let k = 0; k < 7; k++) weekPrefix.push(item(weekPrefix, k) + (worksWeekday(k) ? 1 : 0));
  const days = (dates: readonly string[]): number[] => dates.map((date) => dayOfDate(date) ?? Number.NaN);
  const holidays = days(calendar.holidays);
  const workdays = days(calendar.workdays);
  const exceptions = [
    ...holidays.filter(worksWeekday).map((day) => ({ day, delta: -1 })),
    ...workdays.filter((day) => !worksWeekday(day)).map((day) => ({ day, delta: 1 })),
  ].sort((a, b) => a.day - b.day);
  const exceptionSums = [0];
  for (const [index, { delta }] of exceptions.entries())
    exceptionSums.push(item(exceptionSums, index) + delta);
  const compiled: Compiled = {
    code: calendar.code,
    offsetMs: calendar.utcOffsetMinutes * MINUTE_MS,
    periods,
    dayMs: periods.reduce((sum, { start, end }) => sum + end - start, 0),
    worksWeekday,
    holidays: new Set(holidays),
    workdays: new Set(workdays),
    weekPrefix,
    weekDays: item(weekPrefix, 7),
    exceptionDays: exceptions.map(({ day }) => day),
    exceptionSums,
    lastWorkday: workdays.at(-1),
  };
  compiledCache.set(calendar, compiled);
  return compiled;
}

function item(list: readonly number[], index: number): number {
  const value = list[index];
  if (value === undefined) throw new Error(`internal: index ${index} outside 0..${list.length - 1}`);
  return value;
}

function mod7(day: number): number {
  return ((day % 7) + 7) % 7;
}

/** 1 = Monday … 7 = Sunday; day 0, 1970-01-01, was a Thursday. */
function isoWeekday(day: number): number {
  return ((mod7(day) + 3) % 7) + 1;
}

function weekdayName(day: number): string {
  return WEEKDAY_NAMES[isoWeekday(day) - 1] ?? '';
}

function isWorkingDay(c: Compiled, day: number): boolean {
  if (c.workdays.has(day)) return true;
  if (c.holidays.has(day)) return false;
  return c.worksWeekday(day);
}

/** Working days in [0, day) — negative for days before the epoch — in a handful of steps. */
function workingDaysBefore(c: Compiled, day: number): number {
  let lo = 0;
  let hi = c.exceptionDays.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (item(c.exceptionDays, mid) < day) lo = mid + 1;
    else hi = mid;
  }
  return Math.floor(day / 7) * c.weekDays + item(c.weekPrefix, mod7(day)) + item(c.exceptionSums, lo);
}

/** Working time in the local day before `msOfDay`, if the day is worked. */
function workingMsOfDay(c: Compiled, msOfDay: number): number {
  let sum = 0;
  for (const { start, end } of c.periods) sum += Math.min(Math.max(msOfDay - start, 0), end - start);
  return sum;
}

/** Working time from the epoch's local midnight to `ms` (negative before it); exact below 2^53. */
function workingMsAt(c: Compiled, ms: number): number {
  const local = ms + c.offsetMs;
  const day = Math.floor(local / DAY_MS);
  const today = isWorkingDay(c, day) ? workingMsOfDay(c, local - day * DAY_MS) : 0;
  return c.dayMs * workingDaysBefore(c, day) + today;
}

function instantMs(at: Date, name: string): number {
  const ms = at.getTime();
  if (Number.isNaN(ms)) throw new RangeError(`${name} is an invalid Date`);
  return ms;
}

/** Due dates skip nights, weekends and holidays; a zero duration is due at once, wherever `start` is. */
export function addWorkingTime(calendar: Calendar, start: Date, durationMs: number): Date {
  const c = compile(calendar);
  const startMs = instantMs(start, 'start');
  if (!Number.isSafeInteger(durationMs) || durationMs < 0)
    throw new RangeError(`durationMs must be a whole number of milliseconds ≥ 0, got ${durationMs}`);
  if (durationMs === 0) return new Date(startMs);
  const target = workingMsAt(c, startMs) + durationMs;
  if (!Number.isSafeInteger(target)) throw new RangeError(`durationMs ${durationMs} is too long`);
  // The answer lies on the working day preceded by `full` working days, `rest` into its working time.
  let full = Math.ceil(target / c.dayMs) - 1;
  let rest = target - full * c.dayMs;
  if (rest <= 0) [full, rest] = [full - 1, rest + c.dayMs];
  else if (rest > c.dayMs) [full, rest] = [full + 1, rest - c.dayMs];
  let lo = Math.floor((startMs + c.offsetMs) / DAY_MS);
  let hi = LAST_DAY;
  if (workingDaysBefore(c, hi + 1) <= full) {
    if (c.weekDays === 0)
      throw new Error(
        `calendar ${JSON.stringify(c.code)} has no working time after ` +
          `${c.lastWorkday === undefined ? 'its last listed workday' : dateOfDay(c.lastWorkday)}: ` +
          `no weekday is worked and no later workdays are listed`,
      );
    throw new RangeError(
      `${durationMs} ms of working time from ${start.toISOString()} ends past the last Date`,
    );
  }
  while (lo < hi) {
    const mid = Math.floor((lo + hi) / 2);
    if (workingDaysBefore(c, mid + 1) > full) hi = mid;
    else lo = mid + 1;
  }
  let msOfDay = 0;
  let before = 0;
  for (const { start: from, end } of c.periods) {
    if (rest <= before + end - from) {
      msOfDay = from + rest - before;
      break;
    }
    before += end - from;
  }
  const due = lo * DAY_MS + msOfDay - c.offsetMs;
  if (Math.abs(due) > MAX_DATE_MS)
    throw new RangeError(
      `${durationMs} ms of working time from ${start.toISOString()} ends past the last Date`,
    );
  return new Date(due);
}

/** Remaining and overdue working time; negative when `to` is before `from`, so one call serves both. */
export function workingTimeBetween(calendar: Calendar, from: Date, to: Date): number {
  const c = compile(calendar);
  return workingMsAt(c, instantMs(to, 'to')) - workingMsAt(c, instantMs(from, 'from'));
}

/** Whether a clock should be running at `at`; periods include their start and exclude their end. */
export function isWorkingTime(calendar: Calendar, at: Date): boolean {
  const c = compile(calendar);
  const local = instantMs(at, 'at') + c.offsetMs;
  const day = Math.floor(local / DAY_MS);
  const msOfDay = local - day * DAY_MS;
  return isWorkingDay(c, day) && c.periods.some(({ start, end }) => msOfDay >= start && msOfDay < end);
}

// ---------------------------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------------------------

const DURATION = /^P(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)S)?)?$/;

/**
 * Reads an SLA's ISO 8601 duration with days kept apart (`P1DT2H` → { days: 1, ms: 7_200_000 }),
 * because a day's length depends on the calendar; only whole D, H, M, S — years, months and weeks
 * have no fixed length in working time.
 */
export function parseDuration(iso: string): { days: number; ms: number } {
  const quoted = JSON.stringify(iso);
  if (iso.startsWith('-')) throw new Error(`${quoted}: negative durations are not allowed`);
  const match = DURATION.exec(iso);
  if (match === null) {
    if (/^P[0-9.,YMWD]*(?:T[0-9.,HMS]*)?$/.test(iso)) {
      if (/[.,]/.test(iso))
        throw new Error(`${quoted}: fractions are not allowed; use a smaller unit (PT30M, not PT0.5H)`);
      if (/[YMW]/.test(iso.split('T')[0] ?? ''))
        throw new Error(`${quoted}: years, months and weeks are not allowed; use days (P5D)`);
    }
    throw new Error(
      `${quoted} is not an ISO 8601 duration of days, hours, minutes, seconds (P2D, PT4H, P1DT30M)`,
    );
  }
  const [, days, hours, minutes, seconds] = match;
  if (iso.endsWith('T')) throw new Error(`${quoted}: "T" must be followed by hours, minutes or seconds`);
  if (days === undefined && hours === undefined && minutes === undefined && seconds === undefined)
    throw new Error(`${quoted}: a duration needs at least one number (P2D, PT4H)`);
  const ms = (Number(hours ?? 0) * 3600 + Number(minutes ?? 0) * 60 + Number(seconds ?? 0)) * 1000;
  const whole = Number(days ?? 0);
  if (!Number.isSafeInteger(ms) || !Number.isSafeInteger(whole)) throw new Error(`${quoted} is too long`);
  return { days: whole, ms };
}

/**
 * Turns an SLA duration into working time: P1D is one working day of this calendar (7.5 h for
 * cn-mainland, 24 h for 24x7), so "P2D" means two working days, not 48 hours; H, M and S are
 * working hours, minutes and seconds.
 */
export function durationToWorkingMs(calendar: Calendar, iso: string): number {
  const { days, ms } = parseDuration(iso);
  const total = days * compile(calendar).dayMs + ms;
  if (!Number.isSafeInteger(total)) throw new Error(`${JSON.stringify(iso)} is too long`);
  return total;
}

// ---------------------------------------------------------------------------------------------
// Shipped calendars
// ---------------------------------------------------------------------------------------------

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

function shipped(input: unknown, origin: string): Calendar {
  const checked = checkCalendar(input);
  if (!checked.ok) throw new Error(`${origin}: ${checked.problems.join('; ')}`);
  return deepFreeze(checked.calendar);
}

const CN_MAINLAND = shipped(
  JSON.parse(readFileSync(new URL('./calendars/cn-mainland.json', import.meta.url), 'utf8')),
  'calendars/cn-mainland.json',
);

const ALWAYS_OPEN = shipped(
  {
    code: '24x7',
    name: { zh: '全天候（7×24小时）', en: 'Always open (24×7)' },
    source: 'Every minute of every day is working time; for duty rosters and automated checks.',
    utcOffsetMinutes: 480,
    workingHours: [['00:00', '24:00']],
    weekdays: [1, 2, 3, 4, 5, 6, 7],
    holidays: [],
    workdays: [],
  },
  '24x7 calendar',
);

/** The calendars every deployment has, so a process definition can name one without setup. */
export const DEFAULT_CALENDARS: readonly Calendar[] = Object.freeze([CN_MAINLAND, ALWAYS_OPEN]);

/** Why `iso` is not a duration `parseDuration` accepts, or undefined when it is one. */
export function durationProblem(iso: string): string | undefined {
  try {
    parseDuration(iso);
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}
