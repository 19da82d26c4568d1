// What the k6 scripts share: reading their numeric parameters from the environment.
//
// `param('ROOMS', 10)` is the environment's ROOMS (`k6 run -e ROOMS=20`) or 10 when unset;
// anything but a positive number stops the run at once with the name and the value.
export function param(name, fallback) {
  const v = __ENV[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name}=${v}: want a positive number`);
  return n;
}
