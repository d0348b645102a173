import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  addWorkingTime,
  checkCalendar,
  DEFAULT_CALENDARS,
  durationToWorkingMs,
  isWorkingTime,
  parseDuration,
  workingTimeBetween,
  type Calendar,
} from './calendar.ts';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/** One working day of cn-mainland: 09:00–12:00 and 13:00–17:30. */
const WORKDAY = 7.5 * HOUR;

function calendarByCode(code: string): Calendar {
  const calendar = DEFAULT_CALENDARS.find((c) => c.code === code);
  assert.ok(calendar, `no default calendar ${code}`);
  return calendar;
}
const CN = calendarByCode('cn-mainland');
const ALWAYS = calendarByCode('24x7');

const at = (iso: string): Date => new Date(iso);
const add = (calendar: Calendar, start: string, ms: number): string =>
  addWorkingTime(calendar, at(start), ms).toISOString();
/** The same instant as an ISO string in UTC, so expectations can be written in Beijing time. */
const utc = (iso: string): string => at(iso).toISOString();

/** A seeded PRNG (mulberry32), so a failing case can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A deliberately naive reference: lists every working period day by day, built with the Date
 * parser from "YYYY-MM-DDT00:00:00+08:00" strings, to check the arithmetic against.
 */
function naivePeriods(calendar: Calendar, fromMs: number, days: number): [number, number][] {
  const sign = calendar.utcOffsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(calendar.utcOffsetMinutes);
  const offset = `${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
  const minutes = (time: string): number => Number(time.slice(0, 2)) * 60 + Number(time.slice(3));
  const periods: [number, number][] = [];
  const firstDate = new Date(fromMs + calendar.utcOffsetMinutes * MINUTE - DAY).toISOString().slice(0, 10);
  for (let i = 0; i < days; i++) {
    const date = new Date(Date.parse(firstDate) + i * DAY).toISOString().slice(0, 10);
    const weekday = ((new Date(`${date}T00:00:00Z`).getUTCDay() + 6) % 7) + 1;
    const worked = calendar.workdays.includes(date)
      ? true
      : calendar.holidays.includes(date)
        ? false
        : calendar.weekdays.includes(weekday);
    if (!worked) continue;
    const midnight = Date.parse(`${date}T00:00:00${offset}`);
    for (const [start, end] of calendar.workingHours)
      periods.push([midnight + minutes(start) * MINUTE, midnight + minutes(end) * MINUTE]);
  }
  return periods;
}

function naiveAdd(calendar: Calendar, startMs: number, durationMs: number): number {
  let remaining = durationMs;
  for (const [from, to] of naivePeriods(calendar, startMs, 60)) {
    if (to <= startMs) continue;
    const available = to - Math.max(from, startMs);
    if (remaining <= available) return Math.max(from, startMs) + remaining;
    remaining -= available;
  }
  throw new Error('naiveAdd: ran out of days');
}

function naiveBetween(calendar: Calendar, fromMs: number, toMs: number): number {
  let sum = 0;
  const days = Math.ceil((toMs - fromMs) / DAY) + 3;
  for (const [from, to] of naivePeriods(calendar, fromMs, days))
    sum += Math.max(0, Math.min(to, toMs) - Math.max(from, fromMs));
  return sum;
}

/** A valid calendar to break one field at a time. */
function sample(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    code: 'test',
    name: { zh: '测试', en: 'Test' },
    utcOffsetMinutes: 480,
    workingHours: [
      ['09:00', '12:00'],
      ['13:00', '17:30'],
    ],
    weekdays: [1, 2, 3, 4, 5],
    holidays: ['2026-01-01', '2026-01-02'],
    workdays: ['2026-01-04'],
    ...overrides,
  };
}

function problemsOf(input: unknown): string[] {
  const result = checkCalendar(input);
  if (result.ok) assert.fail('expected the calendar to be rejected');
  return result.problems;
}

function calendar(overrides: Record<string, unknown>): Calendar {
  const result = checkCalendar(sample(overrides));
  assert.ok(result.ok, result.ok ? '' : result.problems.join('; '));
  return result.calendar;
}

describe('default calendars', () => {
  it('are cn-mainland (from the JSON file) and 24x7, valid and frozen', () => {
    assert.deepEqual(
      DEFAULT_CALENDARS.map((c) => c.code),
      ['cn-mainland', '24x7'],
    );
    for (const c of DEFAULT_CALENDARS) {
      assert.equal(checkCalendar(structuredClone(c)).ok, true);
      assert.ok(Object.isFrozen(c) && Object.isFrozen(c.holidays) && Object.isFrozen(c.workingHours[0]));
    }
    assert.equal(CN.utcOffsetMinutes, 480);
    assert.deepEqual(CN.workingHours, [
      ['09:00', '12:00'],
      ['13:00', '17:30'],
    ]);
    assert.match(CN.source ?? '', /国务院办公厅/);
  });

  it('cn-mainland has the State Council 2026 schedule: 248 working days', () => {
    const year = workingTimeBetween(CN, at('2026-01-01T00:00+08:00'), at('2027-01-01T00:00+08:00'));
    assert.equal(year, 248 * WORKDAY);
    // Make-up working days (调休), all on weekends.
    for (const day of ['01-04', '02-14', '02-28', '05-09', '09-20', '10-10'])
      assert.equal(isWorkingTime(CN, at(`2026-${day}T10:00+08:00`)), true, day);
    // Days off on what would be weekdays.
    for (const day of [
      '01-01',
      '01-02',
      '02-16',
      '02-20',
      '02-23',
      '04-06',
      '05-04',
      '05-05',
      '06-19',
      '09-25',
    ])
      assert.equal(isWorkingTime(CN, at(`2026-${day}T10:00+08:00`)), false, day);
    for (const day of ['10-01', '10-02', '10-05', '10-06', '10-07'])
      assert.equal(isWorkingTime(CN, at(`2026-${day}T10:00+08:00`)), false, day);
    assert.equal(isWorkingTime(CN, at('2026-10-08T10:00+08:00')), true);
  });

  it('cn-mainland has the 2025 schedule: 248 working days', () => {
    const year = workingTimeBetween(CN, at('2025-01-01T00:00+08:00'), at('2026-01-01T00:00+08:00'));
    assert.equal(year, 248 * WORKDAY);
    for (const day of ['01-26', '02-08', '04-27', '09-28', '10-11'])
      assert.equal(isWorkingTime(CN, at(`2025-${day}T10:00+08:00`)), true, day);
    for (const day of ['01-01', '01-28', '02-04', '05-05', '06-02', '10-08'])
      assert.equal(isWorkingTime(CN, at(`2025-${day}T10:00+08:00`)), false, day);
  });
});

describe('isWorkingTime', () => {
  it('periods include their start and exclude their end', () => {
    const cases: [string, boolean][] = [
      ['2026-03-02T08:59:59.999+08:00', false],
      ['2026-03-02T09:00+08:00', true],
      ['2026-03-02T11:59:59.999+08:00', true],
      ['2026-03-02T12:00+08:00', false],
      ['2026-03-02T12:30+08:00', false],
      ['2026-03-02T13:00+08:00', true],
      ['2026-03-02T17:29:59.999+08:00', true],
      ['2026-03-02T17:30+08:00', false],
      ['2026-03-07T10:00+08:00', false], // Saturday
      ['2026-03-02T01:00Z', true], // 09:00 in Shanghai
      ['2026-03-01T23:00Z', false], // Monday 07:00 in Shanghai, Sunday in UTC
    ];
    for (const [iso, expected] of cases) assert.equal(isWorkingTime(CN, at(iso)), expected, iso);
  });

  it('24x7 is always working', () => {
    for (const iso of ['2026-01-01T00:00+08:00', '2026-02-17T23:59:59.999+08:00', '1969-07-20T20:17Z'])
      assert.equal(isWorkingTime(ALWAYS, at(iso)), true, iso);
  });
});

describe('addWorkingTime', () => {
  it('skips the lunch break', () => {
    assert.equal(add(CN, '2026-03-02T11:00+08:00', 2 * HOUR), utc('2026-03-02T14:00+08:00'));
    assert.equal(add(CN, '2026-03-02T11:59+08:00', 2 * MINUTE), utc('2026-03-02T13:01+08:00'));
  });

  it('ends at a period end rather than at the next start', () => {
    assert.equal(add(CN, '2026-03-02T11:00+08:00', HOUR), utc('2026-03-02T12:00+08:00'));
    assert.equal(add(CN, '2026-03-06T09:00+08:00', WORKDAY), utc('2026-03-06T17:30+08:00'));
  });

  it('starts counting at the next period when started at a period end or outside working time', () => {
    assert.equal(add(CN, '2026-03-02T12:00+08:00', 30 * MINUTE), utc('2026-03-02T13:30+08:00'));
    assert.equal(add(CN, '2026-03-06T17:30+08:00', MINUTE), utc('2026-03-09T09:01+08:00'));
    assert.equal(add(CN, '2026-03-02T06:00+08:00', HOUR), utc('2026-03-02T10:00+08:00'));
    assert.equal(add(CN, '2026-03-02T12:15+08:00', HOUR), utc('2026-03-02T14:00+08:00'));
  });

  it('skips a weekend', () => {
    assert.equal(add(CN, '2026-03-06T16:30+08:00', 2 * HOUR), utc('2026-03-09T10:00+08:00'));
    assert.equal(add(CN, '2026-03-07T10:00+08:00', HOUR), utc('2026-03-09T10:00+08:00'));
  });

  it('crosses the 2026 Spring Festival, counting the make-up Saturday Feb 14', () => {
    // Friday Feb 13: 1.5 h left; Saturday Feb 14 is worked (调休).
    assert.equal(add(CN, '2026-02-13T16:00+08:00', 4 * HOUR), utc('2026-02-14T11:30+08:00'));
    // Feb 14 is the only working day before Feb 24 (Feb 15–23 off).
    assert.equal(add(CN, '2026-02-13T17:30+08:00', 2 * WORKDAY), utc('2026-02-24T17:30+08:00'));
    assert.equal(add(CN, '2026-02-13T17:30+08:00', 2 * WORKDAY + MINUTE), utc('2026-02-25T09:01+08:00'));
    assert.equal(
      workingTimeBetween(CN, at('2026-02-13T09:00+08:00'), at('2026-02-25T09:00+08:00')),
      3 * WORKDAY,
    );
    // Saturday Feb 28 is worked too.
    assert.equal(add(CN, '2026-02-27T17:00+08:00', HOUR), utc('2026-02-28T09:30+08:00'));
  });

  it('starts after a holiday when started inside one', () => {
    assert.equal(add(CN, '2026-10-03T10:00+08:00', HOUR), utc('2026-10-08T10:00+08:00'));
    assert.equal(add(CN, '2026-01-01T10:00+08:00', 8 * HOUR), utc('2026-01-05T09:30+08:00'));
    // …unless the next day off is followed by a make-up Sunday: Jan 4 is worked.
    assert.equal(add(CN, '2026-01-03T10:00+08:00', HOUR), utc('2026-01-04T10:00+08:00'));
  });

  it('returns the start itself, unmoved, for a zero duration', () => {
    const start = at('2026-03-07T22:00+08:00'); // Saturday night
    const due = addWorkingTime(CN, start, 0);
    assert.equal(due.getTime(), start.getTime());
    assert.notEqual(due, start, 'a new Date, so the caller may mutate it');
  });

  it('a year of working days ends on the last working day of the year', () => {
    assert.equal(add(CN, '2026-01-01T00:00+08:00', 248 * WORKDAY), utc('2026-12-31T17:30+08:00'));
    assert.equal(add(CN, '2025-12-31T17:30+08:00', 248 * WORKDAY), utc('2026-12-31T17:30+08:00'));
  });

  it('long durations are quick and round-trip with workingTimeBetween', () => {
    const start = at('2026-01-05T09:00+08:00');
    const started = performance.now();
    for (let i = 0; i < 1_000; i++) {
      const ms = (200 + i) * WORKDAY;
      const due = addWorkingTime(CN, start, ms);
      assert.equal(workingTimeBetween(CN, start, due), ms);
    }
    const century = addWorkingTime(CN, start, 100 * 261 * WORKDAY);
    assert.equal(workingTimeBetween(CN, start, century), 100 * 261 * WORKDAY);
    assert.ok(performance.now() - started < 2_000, 'long durations take constant time');
  });

  it('round-trips with workingTimeBetween from random starts, and is the earliest such instant', () => {
    const next = random(20260214);
    const from = Date.parse('2024-06-01T00:00+08:00');
    const span = Date.parse('2027-06-01T00:00+08:00') - from;
    for (let i = 0; i < 2_000; i++) {
      const start = new Date(from + Math.floor(next() * span));
      const ms = 1 + Math.floor(next() * (i % 2 === 0 ? 3 * WORKDAY : 300 * WORKDAY));
      const due = addWorkingTime(CN, start, ms);
      const seed = `case ${i}: ${start.toISOString()} + ${ms} ms → ${due.toISOString()}`;
      assert.ok(due > start, seed);
      assert.equal(workingTimeBetween(CN, start, due), ms, seed);
      assert.equal(workingTimeBetween(CN, start, new Date(due.getTime() - 1)), ms - 1, seed);
      assert.equal(isWorkingTime(CN, new Date(due.getTime() - 1)), true, seed);
    }
  });

  it('agrees with a naive day-by-day walk', () => {
    const next = random(7);
    const from = Date.parse('2024-12-01T00:00+08:00');
    const span = Date.parse('2026-12-01T00:00+08:00') - from;
    for (let i = 0; i < 300; i++) {
      const start = from + Math.floor(next() * span);
      const ms = 1 + Math.floor(next() * 20 * WORKDAY);
      const seed = `case ${i}: ${new Date(start).toISOString()} + ${ms} ms`;
      assert.equal(addWorkingTime(CN, new Date(start), ms).getTime(), naiveAdd(CN, start, ms), seed);
      const to = start + Math.floor(next() * 40 * DAY);
      assert.equal(workingTimeBetween(CN, new Date(start), new Date(to)), naiveBetween(CN, start, to), seed);
    }
  });

  it('is plain addition on the 24x7 calendar', () => {
    const next = random(24);
    for (let i = 0; i < 500; i++) {
      const start = Date.parse('2020-01-01T00:00Z') + Math.floor(next() * 10 * 365 * DAY);
      const ms = Math.floor(next() * 1_000 * DAY);
      assert.equal(addWorkingTime(ALWAYS, new Date(start), ms).getTime(), start + ms);
      assert.equal(workingTimeBetween(ALWAYS, new Date(start), new Date(start + ms)), ms);
    }
  });

  it('honours the UTC offset and a working period ending at 24:00', () => {
    const weekends = calendar({
      utcOffsetMinutes: -300,
      workingHours: [['00:00', '24:00']],
      weekdays: [6, 7],
      holidays: [],
      workdays: [],
    });
    // Friday 23:00 at UTC−5 is Saturday 04:00 UTC; counting starts at Saturday 00:00 local.
    assert.equal(add(weekends, '2026-03-06T23:00-05:00', HOUR), utc('2026-03-07T01:00-05:00'));
    // Sunday 23:30 + 1 h: half an hour to midnight, then next Saturday.
    assert.equal(add(weekends, '2026-03-08T23:30-05:00', HOUR), utc('2026-03-14T00:30-05:00'));
    assert.equal(add(weekends, '2026-03-08T23:30-05:00', 30 * MINUTE), utc('2026-03-09T00:00-05:00'));
    assert.equal(isWorkingTime(weekends, at('2026-03-09T00:00-05:00')), false);
    assert.equal(isWorkingTime(weekends, at('2026-03-08T23:59:59.999-05:00')), true);
  });

  it('allows periods that touch', () => {
    const touching = calendar({
      workingHours: [
        ['09:00', '12:00'],
        ['12:00', '13:00'],
      ],
    });
    assert.equal(add(touching, '2026-03-02T11:00+08:00', 2 * HOUR), utc('2026-03-02T13:00+08:00'));
  });

  it('says so when a calendar runs out of working days', () => {
    const listed = calendar({ weekdays: [], holidays: [], workdays: ['2026-01-04', '2026-01-10'] });
    assert.equal(add(listed, '2026-01-05T10:00+08:00', HOUR), utc('2026-01-10T10:00+08:00'));
    assert.throws(
      () => addWorkingTime(listed, at('2026-01-05T10:00+08:00'), WORKDAY + HOUR),
      new Error(
        'calendar "test" has no working time after 2026-01-10: no weekday is worked and no later workdays are listed',
      ),
    );
  });

  it('rejects bad arguments', () => {
    const start = at('2026-03-02T09:00+08:00');
    for (const ms of [-1, 0.5, Number.NaN, Number.POSITIVE_INFINITY])
      assert.throws(() => addWorkingTime(CN, start, ms), RangeError, String(ms));
    assert.throws(() => addWorkingTime(CN, new Date('nonsense'), HOUR), /start is an invalid Date/);
    assert.throws(() => addWorkingTime(ALWAYS, new Date(8.64e15 - 1_000), 2_000), /ends past the last Date/);
  });

  it('rejects an unchecked, broken calendar instead of computing with it', () => {
    const broken = { ...sample(), workingHours: [['12:00', '09:00']] } as unknown as Calendar;
    assert.throws(
      () => addWorkingTime(broken, at('2026-03-02T09:00+08:00'), HOUR),
      new Error('calendar "test": workingHours[0]: "12:00"–"09:00" ends before it starts'),
    );
  });
});

describe('workingTimeBetween', () => {
  it('counts working time in [from, to)', () => {
    const friday5pm = at('2026-03-06T17:00+08:00');
    const monday10am = at('2026-03-09T10:00+08:00');
    assert.equal(workingTimeBetween(CN, friday5pm, monday10am), 90 * MINUTE);
    assert.equal(workingTimeBetween(CN, at('2026-03-02T11:30+08:00'), at('2026-03-02T13:30+08:00')), HOUR);
    assert.equal(workingTimeBetween(CN, at('2026-03-02T12:00+08:00'), at('2026-03-02T13:00+08:00')), 0);
    assert.equal(workingTimeBetween(CN, friday5pm, friday5pm), 0);
  });

  it('is negative when to is before from (how far past due)', () => {
    const due = at('2026-03-06T17:00+08:00');
    const now = at('2026-03-09T10:00+08:00');
    assert.equal(workingTimeBetween(CN, now, due), -90 * MINUTE);
    const next = random(99);
    for (let i = 0; i < 200; i++) {
      const a = new Date(Date.parse('2026-01-01T00:00Z') + Math.floor(next() * 365 * DAY));
      const b = new Date(Date.parse('2026-01-01T00:00Z') + Math.floor(next() * 365 * DAY));
      assert.equal(workingTimeBetween(CN, a, b), -workingTimeBetween(CN, b, a));
    }
  });

  it('is exact decades away from the data', () => {
    // After the last listed date only the weekday rule applies: 52 weeks of 5 days.
    const from = at('2100-01-04T00:00+08:00'); // a Monday
    assert.equal(workingTimeBetween(CN, from, new Date(from.getTime() + 52 * 7 * DAY)), 260 * WORKDAY);
    const before = at('1900-01-01T00:00+08:00'); // a Monday
    assert.equal(workingTimeBetween(CN, before, new Date(before.getTime() + 7 * DAY)), 5 * WORKDAY);
    assert.equal(add(CN, '1900-01-05T17:00+08:00', HOUR), utc('1900-01-08T09:30+08:00'));
    assert.equal(add(CN, '1969-12-31T17:00+08:00', 2 * WORKDAY), utc('1970-01-02T17:00+08:00'));
  });
});

describe('durations', () => {
  it('parses days apart from time', () => {
    assert.deepEqual(parseDuration('P2D'), { days: 2, ms: 0 });
    assert.deepEqual(parseDuration('PT4H'), { days: 0, ms: 4 * HOUR });
    assert.deepEqual(parseDuration('PT30M'), { days: 0, ms: 30 * MINUTE });
    assert.deepEqual(parseDuration('PT45S'), { days: 0, ms: 45_000 });
    assert.deepEqual(parseDuration('P1DT2H30M5S'), { days: 1, ms: 2 * HOUR + 30 * MINUTE + 5_000 });
    assert.deepEqual(parseDuration('PT0S'), { days: 0, ms: 0 });
    assert.deepEqual(parseDuration('PT36H'), { days: 0, ms: 36 * HOUR });
  });

  it('rejects what it cannot measure in working time, saying why', () => {
    const cases: [string, string][] = [
      ['P1Y', '"P1Y": years, months and weeks are not allowed; use days (P5D)'],
      ['P2M', '"P2M": years, months and weeks are not allowed; use days (P5D)'],
      ['P1W', '"P1W": years, months and weeks are not allowed; use days (P5D)'],
      ['PT', '"PT": "T" must be followed by hours, minutes or seconds'],
      ['P1DT', '"P1DT": "T" must be followed by hours, minutes or seconds'],
      ['P', '"P": a duration needs at least one number (P2D, PT4H)'],
      ['-PT1H', '"-PT1H": negative durations are not allowed'],
      ['PT0.5H', '"PT0.5H": fractions are not allowed; use a smaller unit (PT30M, not PT0.5H)'],
      ['abc', '"abc" is not an ISO 8601 duration of days, hours, minutes, seconds (P2D, PT4H, P1DT30M)'],
      ['pt4h', '"pt4h" is not an ISO 8601 duration of days, hours, minutes, seconds (P2D, PT4H, P1DT30M)'],
      [
        'PT30M4H',
        '"PT30M4H" is not an ISO 8601 duration of days, hours, minutes, seconds (P2D, PT4H, P1DT30M)',
      ],
      ['4H', '"4H" is not an ISO 8601 duration of days, hours, minutes, seconds (P2D, PT4H, P1DT30M)'],
      ['P99999999999999999D', '"P99999999999999999D" is too long'],
    ];
    for (const [iso, message] of cases) assert.throws(() => parseDuration(iso), new Error(message), iso);
  });

  it('P1D is one working day of the calendar', () => {
    assert.equal(durationToWorkingMs(CN, 'P1D'), WORKDAY);
    assert.equal(durationToWorkingMs(CN, 'P2DT1H'), 2 * WORKDAY + HOUR);
    assert.equal(durationToWorkingMs(CN, 'PT4H'), 4 * HOUR);
    assert.equal(durationToWorkingMs(ALWAYS, 'P1D'), DAY);
    // "Due in 2 working days" from a Friday afternoon lands on Tuesday afternoon.
    const due = addWorkingTime(CN, at('2026-03-06T15:00+08:00'), durationToWorkingMs(CN, 'P2D'));
    assert.equal(due.toISOString(), utc('2026-03-10T15:00+08:00'));
  });
});

describe('checkCalendar', () => {
  it('accepts a valid calendar and returns it', () => {
    const input = sample({ source: 'test data' });
    const result = checkCalendar(input);
    assert.ok(result.ok);
    assert.equal(result.calendar, input);
  });

  it('names each semantic problem precisely', () => {
    const cases: [Record<string, unknown>, string[]][] = [
      [
        {
          workingHours: [
            ['09:00', '12:00'],
            ['13:00', '12:30'],
          ],
        },
        ['workingHours[1]: "13:00"–"12:30" ends before it starts'],
      ],
      [{ workingHours: [['09:00', '09:00']] }, ['workingHours[0]: "09:00"–"09:00" is empty']],
      [
        {
          workingHours: [
            ['09:00', '12:00'],
            ['11:30', '14:00'],
          ],
        },
        ['workingHours[1]: "11:30"–"14:00" overlaps workingHours[0] "09:00"–"12:00"'],
      ],
      [
        {
          workingHours: [
            ['13:00', '17:00'],
            ['09:00', '12:00'],
          ],
        },
        [
          'workingHours[1]: "09:00"–"12:00" starts before workingHours[0] "13:00"–"17:00"; list periods in order',
        ],
      ],
      [{ workingHours: [] }, ['workingHours: is empty, so the calendar has no working time at all']],
      [
        { weekdays: [], workdays: [] },
        ['weekdays, workdays: both are empty, so the calendar has no working time at all'],
      ],
      [{ weekdays: [1, 2, 2, 3] }, ['weekdays[2]: 2 is listed twice']],
      [{ weekdays: [1, 3, 2] }, ['weekdays[2]: 2 comes after 3; list weekdays in order']],
      [
        { holidays: ['2026-01-01', '2026-01-02', '2026-02-03', '2026-02-30'] },
        ['holidays[3]: "2026-02-30" is not a date'],
      ],
      [{ holidays: ['2025-02-29'] }, ['holidays[0]: "2025-02-29" is not a date']],
      [{ holidays: ['2026-01-01', '2026-01-01'] }, ['holidays[1]: "2026-01-01" is listed twice']],
      [
        { holidays: ['2026-01-02', '2026-01-01'] },
        ['holidays[1]: "2026-01-01" comes after "2026-01-02"; list dates in order'],
      ],
      [
        { holidays: ['2026-01-01'], workdays: ['2026-01-01'] },
        ['workdays[0]: "2026-01-01" is also holidays[0]; a day is either off or worked'],
      ],
      [
        { workdays: ['2026-01-05'] },
        [
          'workdays[0]: "2026-01-05" is a Monday, already worked; workdays are make-up days that would otherwise be off',
        ],
      ],
    ];
    for (const [overrides, expected] of cases)
      assert.deepEqual(problemsOf(sample(overrides)), expected, JSON.stringify(overrides));
  });

  it('names each shape problem precisely', () => {
    const { code: _code, ...withoutCode } = sample();
    const cases: [unknown, string[]][] = [
      [sample({ utcOffsetMinutes: 900 }), ['utcOffsetMinutes: 900 is outside -720..840']],
      [sample({ utcOffsetMinutes: -780 }), ['utcOffsetMinutes: -780 is outside -720..840']],
      [sample({ utcOffsetMinutes: '480' }), ['utcOffsetMinutes: "480" must be integer']],
      [sample({ utcOffsetMinutes: 480.5 }), ['utcOffsetMinutes: 480.5 must be integer']],
      [
        sample({ workingHours: [['9:00', '12:00']] }),
        ['workingHours[0][0]: "9:00" is not a time of day (HH:MM, 00:00–24:00)'],
      ],
      [
        sample({ workingHours: [['09:00', '24:30']] }),
        ['workingHours[0][1]: "24:30" is not a time of day (HH:MM, 00:00–24:00)'],
      ],
      [
        sample({ workingHours: [['09:00', '12:00', '13:00']] }),
        ['workingHours[0]: ["09:00","12:00","13:00"] is not a ["HH:MM", "HH:MM"] pair'],
      ],
      [
        sample({ workingHours: [['09:00']] }),
        ['workingHours[0]: ["09:00"] is not a ["HH:MM", "HH:MM"] pair'],
      ],
      [sample({ weekdays: [0, 1] }), ['weekdays[0]: 0 is not an ISO weekday (1 = Monday … 7 = Sunday)']],
      [sample({ weekdays: [1, 8] }), ['weekdays[1]: 8 is not an ISO weekday (1 = Monday … 7 = Sunday)']],
      [sample({ holidays: ['2026/01/01'] }), ['holidays[0]: "2026/01/01" is not a date (YYYY-MM-DD)']],
      [sample({ workdays: ['2026-1-4'] }), ['workdays[0]: "2026-1-4" is not a date (YYYY-MM-DD)']],
      [
        sample({ code: 'CN Mainland' }),
        ['code: "CN Mainland" must be lowercase letters and digits joined by "-"'],
      ],
      [sample({ name: { zh: '', en: 'Test' } }), ['name.zh: is empty']],
      [sample({ name: { zh: '测试' } }), ['name.en: is missing']],
      [sample({ holiday: [] }), ['holiday: is not a calendar field']],
      [sample({ name: { zh: '测试', en: 'Test', fr: 'Essai' } }), ['name.fr: is not allowed here']],
      [withoutCode, ['code: is missing']],
      [42, ['calendar: 42 must be object']],
      [null, ['calendar: null must be object']],
    ];
    for (const [input, expected] of cases)
      assert.deepEqual(problemsOf(input), expected, JSON.stringify(input));
  });

  it('reports several problems at once', () => {
    assert.deepEqual(
      problemsOf(
        sample({
          workingHours: [
            ['09:00', '12:00'],
            ['13:00', '12:30'],
          ],
          holidays: ['2026-01-01', '2026-02-30'],
        }),
      ),
      ['workingHours[1]: "13:00"–"12:30" ends before it starts', 'holidays[1]: "2026-02-30" is not a date'],
    );
    const unknown = Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`field${i}`, i]));
    const many = problemsOf(sample(unknown));
    assert.deepEqual(many.slice(0, 2), [
      'field0: is not a calendar field',
      'field1: is not a calendar field',
    ]);
    assert.equal(many.at(-1), '… and perhaps more: fix these and check again');
  });
});
