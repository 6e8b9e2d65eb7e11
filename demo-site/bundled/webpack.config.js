// Bundles src/storefront.js with the tracker's npm package into dist/ (served at /bundled/).
const path = require('path');

module.exports = {
  mode: 'production',
  entry: './src/storefront.js',
  output: {
    path: path.resolve(__dirname, 'dist'),
    filename: 'storefront.js',
    publicPath: '/bundled/',
    clean: true,
  },
  // wasm-bindgen's bundler target imports the .wasm file as an ES module.
  experiments: { asyncWebAssembly: true },
  performance: { hints: false },
};
