// Two JS functions share the CPU about 80/20 for SECONDS (argv[2]); at the
// end the script prints the shares it measured itself, as JSON, for the
// test to compare with the profile.
'use strict';
function hotSpin(n) {
  let x = 0;
  for (let i = 0; i < n; i++) x += Math.sqrt(i) * Math.sin(i);
  return x;
}
function coldSpin(n) {
  let x = 0;
  for (let i = 0; i < n; i++) x += Math.sqrt(i) * Math.cos(i);
  return x;
}
const seconds = Number(process.argv[2] || 5);
const end = Date.now() + seconds * 1000;
let hot = 0n, cold = 0n, acc = 0;
while (Date.now() < end) {
  let t = process.hrtime.bigint();
  acc += hotSpin(80000);
  let u = process.hrtime.bigint();
  acc += coldSpin(20000);
  let v = process.hrtime.bigint();
  hot += u - t;
  cold += v - u;
}
const total = Number(hot + cold);
console.log(JSON.stringify({ hot: Number(hot) / total, cold: Number(cold) / total, acc: acc > 0 }));
