// Progressive enhancement only: every page works without it. Asks before what cannot be
// undone (buttons with `data-confirm`); shows the copy buttons and copies their text; shows
// the "back" link of error pages, which goes back to the page before (the form that was sent).
document.addEventListener("DOMContentLoaded", () => {
  for (const link of document.querySelectorAll("a[data-back]")) {
    if (history.length < 2) continue;
    link.hidden = false;
    link.addEventListener("click", (event) => {
      event.preventDefault();
      history.back();
    });
  }
  for (const button of document.querySelectorAll("button[data-confirm]")) {
    button.addEventListener("click", (event) => {
      if (!confirm(button.dataset.confirm)) event.preventDefault();
    });
  }
  if (!navigator.clipboard) return;
  for (const button of document.querySelectorAll("button.copy")) {
    const label = button.textContent;
    button.hidden = false;
    button.addEventListener("click", async () => {
      await navigator.clipboard.writeText(button.dataset.copy);
      button.textContent = "Copied";
      setTimeout(() => { button.textContent = label; }, 1500);
    });
  }
});
