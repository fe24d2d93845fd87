import { randomBytes } from 'node:crypto';

/**
 * A new pair instance id (DESIGN §3 Identity): made by the primary when it first starts, so a
 * pair started again with the same key and arbiter is a new instance, and no claim left by an
 * earlier run can ever halt it. Time first, so that an arbiter's keys list in start order.
 */
export const newPairInstance = (): string => `p${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
