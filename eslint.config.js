// @ts-check
// ESLint flat config: rules that catch bugs, none that fight prettier (it owns
// the layout; `npm run lint` runs both). Type-aware rules read the types through
// the TypeScript project service (tsconfig.json, soak/tsconfig.json).
import js from '@eslint/js'
import { defineConfig } from 'eslint/config'
import globals from 'globals'
import tseslint from 'typescript-eslint'

export default defineConfig(
  {
    ignores: [
      'dist/',
      '.test-dist/',
      'coverage/',
      'bench/.dist/',
      'bench/results/',
      'soak/results/',
      // tsc's output for tokenward/client (src/client/ is linted instead).
      'demo/spa/client.js',
    ],
  },
  {
    linterOptions: {
      // An `eslint-disable` that no longer silences anything is reported, so stale ones do not pile up.
      reportUnusedDisableDirectives: 'error',
    },
  },
  js.configs.recommended,
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      // Promises: an unawaited rejection crashes the process or is lost; a
      // promise where a boolean or a void callback is expected is always true
      // or its rejection is unhandled.
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/return-await': ['error', 'error-handling-correctness-only'],
      // Types are erased at build time (verbatimModuleSyntax); say so at the import.
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-import-type-side-effects': 'error',
      // `_`-prefixed names are deliberately unused (tsconfig's noUnused* agree).
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', ignoreRestSiblings: true },
      ],
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      // `xs[i]!` is written where an index is known to be in range; without
      // noUncheckedIndexedAccess the checker calls that `!` unnecessary, but it
      // documents the reasoning and keeps the code ready for that flag.
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
      // `async` without `await` is how a function turns a throw into a rejection
      // and implements a Promise-returning interface (the memory store).
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    // The server logs through pino (structured, with secrets redacted); a stray
    // console call bypasses both.
    files: ['src/**/*.ts'],
    ignores: ['src/client/**'],
    rules: {
      'no-console': 'error',
    },
  },
  {
    // Tests print measurements with console.info (kept in CI logs); a console.log
    // is a leftover unless it says why (`eslint-disable-next-line no-console`).
    files: ['test/**/*.ts'],
    rules: {
      'no-console': ['error', { allow: ['info', 'warn', 'error'] }],
      // vitest types its asymmetric matchers (expect.any, expect.anything,
      // expect.stringMatching …) as `any`, so that they fit any expected shape;
      // placing one in an expected object is an "unsafe assignment". The
      // assertion is the type check there. Member access and arguments stay
      // checked: parsed JSON is typed where a test reads into it.
      '@typescript-eslint/no-unsafe-assignment': 'off',
    },
  },
  {
    // The browser side: tokenward/client and the demo SPA.
    files: ['src/client/**/*.ts', 'demo/spa/**/*.js', 'test/fixtures/spa/**/*.js'],
    languageOptions: {
      globals: globals.browser,
    },
  },
  {
    files: ['eslint.config.js'],
    languageOptions: {
      globals: globals.node,
    },
  },
)
