/** The trust module's entries in the one error catalogue. */
import { defineErrors } from '../kernel/index.ts';

export const TrustErrors = defineErrors({
  'invalid-credentials': { status: 401, title: 'The username or password is wrong' },
  'account-locked': {
    status: 423,
    title: 'The account is locked after repeated failed sign-ins; retry later',
  },
  'weak-password': { status: 422, title: 'The password does not meet the password policy' },
  'duplicate-user': { status: 409, title: 'A user with this username or identity already exists' },
  'duplicate-organisation': {
    status: 409,
    title: 'An organisation with this code or credit code already exists',
  },
  'privilege-escalation': { status: 403, title: 'A caller cannot grant permissions they do not hold there' },
  'system-role': { status: 409, title: 'System roles are defined by the platform and cannot be changed' },
  'unknown-permission': { status: 422, title: 'The permission is not defined' },
  'identity-provider-unavailable': { status: 503, title: 'The external identity provider cannot be reached' },
});
