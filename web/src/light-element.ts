import { LitElement, type ReactiveControllerHost } from 'lit';

/**
 * An element of the site that renders into the page itself, not a shadow root: the site's
 * one stylesheet reaches it, and its ids, labels and roles share the page's accessibility
 * tree (an `aria-labelledby` points across elements). The embeddable widget is the one
 * element that keeps a shadow root, so an embedder's styles cannot break it.
 */
export class LightElement extends LitElement {
  protected override createRenderRoot() {
    return this;
  }
}

/** Listens on `target` (the window, the document) only while `host` is in the page. */
export function listenWhileConnected(
  host: ReactiveControllerHost,
  target: EventTarget,
  type: string,
  listener: EventListener,
): void {
  host.addController({
    hostConnected: () => target.addEventListener(type, listener),
    hostDisconnected: () => target.removeEventListener(type, listener),
  });
}
