import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AppError, Errors } from '../errors/errors.ts';
import {
  assertValid,
  checkComponentId,
  checkCreditCode,
  checkDivisionCode,
  checkResidentId,
  creditCodeCheckChar,
  residentIdCheckChar,
  type CodeCheck,
} from './codes.ts';

function reason<T>(c: CodeCheck<T>): string {
  if (c.valid) return assert.fail('expected the code to be rejected');
  return c.reason;
}

/** Builds a resident ID with a correct check character. */
function residentId(first17: string): string {
  return first17 + residentIdCheckChar(first17);
}

describe('GB/T 2260 division codes', () => {
  it('accepts Shanghai districts and streets from the reference data, with their path', () => {
    const d = checkDivisionCode('310113');
    assert.ok(d.valid);
    assert.equal(d.value.name, '宝山区');
    assert.equal(d.value.level, 'county');
    assert.deepEqual(d.value.path, ['上海市', '市辖区', '宝山区']);
    const s = checkDivisionCode('310101002');
    assert.ok(s.valid);
    assert.equal(s.value.name, '南京东路街道');
    assert.equal(s.value.level, 'township');
    assert.equal(checkDivisionCode('310000').valid, true);
    assert.equal(checkDivisionCode('110000').valid, true);
  });

  it('rejects with a precise reason', () => {
    assert.equal(reason(checkDivisionCode('31011')), 'length');
    assert.equal(reason(checkDivisionCode('3101130')), 'length');
    assert.equal(reason(checkDivisionCode('31O113')), 'format');
    assert.equal(reason(checkDivisionCode("310113'; drop table x;--")), 'format');
    assert.equal(reason(checkDivisionCode('990113')), 'unknown-province');
    assert.equal(reason(checkDivisionCode('310102')), 'unknown-division'); // 南市区, abolished 2000
    assert.equal(reason(checkDivisionCode('310019')), 'format');
    assert.equal(reason(checkDivisionCode('')), 'format');
  });
});

describe('GB 11643 resident identity numbers', () => {
  const today = new Date('2026-11-21T00:00:00Z');

  it('accepts a valid number and decodes it, masking for display', () => {
    const id = residentId('31011319900307002');
    const r = checkResidentId(id, { today });
    assert.ok(r.valid);
    assert.equal(r.value.birthDate, '1990-03-07');
    assert.equal(r.value.sex, 'female'); // 17th digit 2 is even
    assert.equal(r.value.province, '上海市');
    assert.equal(r.value.masked, `310***********${id.slice(-4)}`);
  });

  it('computes the GB 11643 check character (incl. X) and accepts a lower-case x', () => {
    // 11010519491231002X is the standard's worked example.
    assert.equal(residentIdCheckChar('11010519491231002'), 'X');
    assert.equal(checkResidentId('11010519491231002x', { today }).valid, true);
  });

  it('accepts a number for a baby born today in China, whatever the hour in UTC', () => {
    const bornToday = residentId('31011320261121002');
    // 04:00 in Shanghai on 21 November is still 20 November in UTC.
    assert.equal(checkResidentId(bornToday, { today: new Date('2026-11-20T20:00:00Z') }).valid, true);
    assert.equal(
      reason(checkResidentId(bornToday, { today: new Date('2026-11-20T15:00:00Z') })),
      'birthdate',
    );
  });

  it('rejects wrong check digits, impossible dates, bad regions and shapes, each with its reason', () => {
    const good = residentId('31011319900307002');
    const wrong = good.slice(0, 17) + (good.endsWith('1') ? '2' : '1');
    const r = checkResidentId(wrong, { today });
    assert.equal(reason(r), 'checksum');
    assert.match(r.valid ? '' : r.message, /the first 17 digits require "\d"/);
    assert.equal(reason(checkResidentId(residentId('31011319900230002'), { today })), 'birthdate'); // 30 Feb
    assert.equal(reason(checkResidentId(residentId('31011320991231002'), { today })), 'birthdate'); // future
    assert.equal(reason(checkResidentId(residentId('31011318000101002'), { today })), 'birthdate');
    assert.equal(reason(checkResidentId(residentId('99011319900307002'), { today })), 'unknown-province');
    assert.equal(reason(checkResidentId('3101131990030700', { today })), 'length');
    assert.equal(reason(checkResidentId(`${good}1`, { today })), 'length');
    assert.equal(reason(checkResidentId('31011319900307A02X', { today })), 'format');
    assert.equal(reason(checkResidentId('31011319900307002Y', { today })), 'format');
    assert.equal(reason(checkResidentId('310113900307002', { today })), 'legacy-15-digit');
  });
});

describe('GB 32100 unified social credit codes', () => {
  it('accepts a valid code and decodes authority, type, region and organisation code', () => {
    const r = checkCreditCode('91350100M000100Y43');
    assert.ok(r.valid);
    assert.equal(r.value.registrationAuthority, '工商');
    assert.equal(r.value.organisationType, '企业');
    assert.equal(r.value.province, '福建省');
    assert.equal(r.value.organisationCode, 'M000100Y4');
    assert.equal(creditCodeCheckChar('91350100M000100Y4'), '3');
  });

  it('rejects each kind of error with its reason', () => {
    assert.equal(reason(checkCreditCode('91350100M000100Y44')), 'checksum');
    assert.equal(reason(checkCreditCode('91350100M000100Y53')), 'organisation-code-checksum');
    assert.equal(reason(checkCreditCode('91350100M000100Y4')), 'length');
    assert.equal(reason(checkCreditCode('91350100M0001O0Y43')), 'format'); // letter O
    assert.equal(reason(checkCreditCode('B1350100M000100Y43')), 'registration-authority');
    assert.equal(reason(checkCreditCode('95350100M000100Y43')), 'organisation-type');
    assert.equal(reason(checkCreditCode('91990100M000100Y43')), 'unknown-province');
    assert.equal(reason(checkCreditCode('913501A0M000100Y43')), 'format');
  });
});

describe('city component identifiers', () => {
  it('accepts district + component class + serial', () => {
    const r = checkComponentId('3101130101000001');
    assert.ok(r.valid);
    assert.equal(r.value.district.name, '宝山区');
    assert.equal(r.value.category.name, '上水井盖');
    assert.equal(r.value.serial, '000001');
  });

  it('rejects unknown districts, classes, zero serials and bad shapes', () => {
    assert.equal(reason(checkComponentId('3101020101000001')), 'district');
    assert.equal(reason(checkComponentId('3100000101000001')), 'district'); // a province, not a district
    assert.equal(reason(checkComponentId('3101139901000001')), 'class');
    assert.equal(reason(checkComponentId('3101130199000001')), 'class');
    assert.equal(reason(checkComponentId('3101130101000000')), 'serial');
    assert.equal(reason(checkComponentId('310113010100001')), 'length');
    assert.equal(reason(checkComponentId('31011301010000A1')), 'format');
  });
});

describe('assertValid', () => {
  it('throws the catalogue error with the reason, or returns the value', () => {
    assert.equal(assertValid(checkDivisionCode('310113'), Errors['invalid-division-code']).name, '宝山区');
    assert.throws(
      () => assertValid(checkDivisionCode('99'), Errors['invalid-division-code']),
      (e: unknown) => e instanceof AppError && e.status === 422 && e.extensions['reason'] === 'length',
    );
  });
});
