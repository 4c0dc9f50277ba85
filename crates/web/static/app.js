// Progressive enhancement only: every page works without it. Shows the copy buttons and
// copies their text; makes "back" links of error pages go back to the page before (the form
// that was sent) rather than to the projects page.
document.addEventListener("DOMContentLoaded", () => {
  for (const link of document.querySelectorAll("a[data-back]")) {
    if (history.length < 2) continue;
    link.addEventListener("click", (event) => {
      event.preventDefault();
      history.back();
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
