// The names no session data field may have.

/**
 * Names user code can never write into a session: they would replace its prototype (`__proto__`; the others are the
 * usual companions of prototype pollution) or shadow what every session has. `Object.assign(req.session, req.body)`
 * with any of them in the body changes nothing.
 */
const reserved = new Set([
  '__proto__',
  'constructor',
  'prototype',
  // What every object has from Object.prototype: shadowing it breaks code that calls it on the session.
  'hasOwnProperty',
  'isPrototypeOf',
  'propertyIsEnumerable',
  'toString',
  'toLocaleString',
  'valueOf',
  '__defineGetter__',
  '__defineSetter__',
  '__lookupGetter__',
  '__lookupSetter__',
  'id',
  'cookie',
  'save',
  'reload',
  'touch',
  'regenerate',
  'destroy',
]);

/** Whether `field` is a name no data field may have (see {@link reserved}). */
export function isReservedField(field: string): boolean {
  return reserved.has(field);
}
