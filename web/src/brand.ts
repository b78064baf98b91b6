import { html, nothing, type TemplateResult } from 'lit';

/** The site's mark at the top of every page and card; `tag` names the part of the site. */
export const brand = (tag?: TemplateResult) =>
  html`<div class="brand"><span class="logo" aria-hidden="true"></span><span>flowmeter</span>${tag ?? nothing}</div>`;
