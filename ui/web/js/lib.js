// The view layer: Preact with htm's tagged templates, so the dashboard is
// plain ES modules with no build step.
import { h, render, Fragment } from '../vendor/preact.mjs';
import {
  useState,
  useEffect,
  useLayoutEffect,
  useRef,
  useMemo,
  useCallback,
  useId,
} from '../vendor/hooks.mjs';
import htm from '../vendor/htm.mjs';

export const html = htm.bind(h);
export {
  h,
  render,
  Fragment,
  useState,
  useEffect,
  useLayoutEffect,
  useRef,
  useMemo,
  useCallback,
  useId,
};
