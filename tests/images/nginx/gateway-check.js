// Build-time self-test: njs loads and js_set can call a function.
function answer(r) {
    return 'njs ' + njs.version;
}
export default { answer };
