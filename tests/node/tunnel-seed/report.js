// The one way the seed-client scripts report: print one JSON line and exit. The seed never unrefs its
// timers, so the scripts exit explicitly, always; and it closes its tunnel from a process 'exit' hook,
// which would report a second time, so only the first report counts.
'use strict';

// reporter(limitMs, onTimeout): returns done(code, obj). After limitMs, done(1, onTimeout()).
module.exports = function reporter(limitMs, onTimeout) {
  let reported = false;
  const timer = setTimeout(() => done(1, onTimeout()), limitMs);
  function done(code, obj) {
    if (reported) return;
    reported = true;
    clearTimeout(timer);
    console.log(JSON.stringify(obj));
    process.exit(code);
  }
  return done;
};
